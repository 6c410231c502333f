import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ExponentialBackoff, handleAll, retry } from 'cockatiel';
import { jitteredBackoff } from './jittered-backoff.js';

const options = { initialDelay: 100, maxDelay: 2_000, generator: jitteredBackoff };

/** The first `count` delays of one backoff sequence. */
function delays(count: number): number[] {
  const out: number[] = [];
  let backoff = new ExponentialBackoff(options).next();
  for (let i = 0; i < count; i++) {
    out.push(backoff.duration);
    backoff = backoff.next(undefined);
  }
  return out;
}

test('delays double from the interval, within ±25 % jitter, and stop growing at the cap', () => {
  for (let run = 0; run < 500; run++) {
    delays(10).forEach((delay, attempt) => {
      const base = Math.min(2_000, 100 * 2 ** attempt);
      assert.ok(delay >= base * 0.75 && delay <= base * 1.25, `retry ${attempt}: ${delay} ms`);
    });
  }
});

test('the jitter spreads retries across its whole range', () => {
  const first = Array.from({ length: 1_000 }, () => delays(1)[0] ?? 0);
  assert.ok(Math.min(...first) < 85, `smallest first delay ${Math.min(...first)}`);
  assert.ok(Math.max(...first) > 115, `largest first delay ${Math.max(...first)}`);
  const capped = Array.from({ length: 1_000 }, () => delays(12)[11] ?? 0);
  assert.ok(Math.max(...capped) <= 2_500 && Math.min(...capped) >= 1_500);
  assert.ok(new Set(capped).size > 100, 'capped delays are jittered too');
});

test('every query starts the schedule again: the backoff resets after a success', async () => {
  const policy = retry(handleAll, {
    maxAttempts: 3,
    backoff: new ExponentialBackoff({
      initialDelay: 4,
      maxDelay: 1_000,
      generator: jitteredBackoff,
    }),
  });
  const seen: number[] = [];
  policy.onRetry(({ delay }) => seen.push(delay));
  for (let query = 0; query < 2; query++) {
    let failures = 0;
    await policy.execute(() => {
      if (failures++ < 3) throw new Error('transient');
      return 'ok';
    });
  }
  assert.equal(seen.length, 6);
  // Each query's retries wait about 4, 8, 16 ms: the second query does not go on at 32, 64, 128.
  for (const [index, delay] of seen.entries()) {
    const base = 4 * 2 ** (index % 3);
    assert.ok(delay >= base * 0.75 && delay <= base * 1.25, `retry ${index}: ${delay} ms`);
  }
});
