import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redisReconnectDelay } from './redis-connection.js';

test('Redis reconnects back off from 100 ms to 2 s with ±25 % jitter, and never give up', () => {
  assert.equal(
    redisReconnectDelay(1, () => 0.5),
    100,
  );
  assert.equal(
    redisReconnectDelay(2, () => 0.5),
    200,
  );
  assert.equal(
    redisReconnectDelay(5, () => 0.5),
    1_600,
  );
  assert.equal(
    redisReconnectDelay(6, () => 0.5),
    2_000,
  );
  assert.equal(
    redisReconnectDelay(1, () => 0),
    75,
  );
  assert.equal(
    redisReconnectDelay(1, () => 0.999999),
    125,
  );
  // ioredis stops reconnecting when retryStrategy returns a non-number: it never does.
  for (const attempt of [7, 100, 1_000_000]) {
    const delay = redisReconnectDelay(attempt);
    assert.ok(delay >= 1_500 && delay <= 2_500, `attempt ${attempt}: ${delay} ms`);
  }
});
