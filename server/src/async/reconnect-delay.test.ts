import assert from 'node:assert/strict';
import { test } from 'node:test';
import { reconnectDelay } from './reconnect-delay.js';

test('doubles from the floor up to the cap', () => {
  const middle = () => 0.5; // no jitter
  const delays = [0, 1, 2, 3, 4, 5, 6].map((attempt) =>
    reconnectDelay(attempt, 500, 10_000, middle),
  );
  assert.deepEqual(delays, [500, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
});

test('jitter stays within ±25 % of the schedule, and is spread across it', () => {
  const seen: number[] = [];
  for (let i = 0; i < 2_000; i++) seen.push(reconnectDelay(3, 500, 10_000));
  assert.ok(Math.min(...seen) >= 3_000, `min ${Math.min(...seen)}`);
  assert.ok(Math.max(...seen) <= 5_000, `max ${Math.max(...seen)}`);
  assert.ok(Math.max(...seen) - Math.min(...seen) > 1_500, 'delays are spread, not fixed');
  assert.equal(
    reconnectDelay(3, 500, 10_000, () => 0),
    3_000,
  );
  assert.equal(
    reconnectDelay(3, 500, 10_000, () => 0.999_999),
    5_000,
  );
});

test('stays at the cap forever instead of overflowing or giving up', () => {
  for (const attempt of [10, 100, 10_000, Number.MAX_SAFE_INTEGER]) {
    const delay = reconnectDelay(attempt, 500, 10_000, () => 0.5);
    assert.equal(delay, 10_000, `attempt ${attempt}`);
  }
});
