import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nextLiveCursor } from './live-cursor.js';

const epoch = Date.UTC(2024, 9, 9);

test('the cursor is the end of the current window', () => {
  assert.equal(nextLiveCursor(20_000, undefined, epoch + 45_000), '60');
  assert.equal(nextLiveCursor(20_000, '', epoch + 45_000), '60');
  assert.equal(nextLiveCursor(20_000, '40', epoch + 59_999), '60');
});

test('clients in one window get the same cursor', () => {
  assert.equal(
    nextLiveCursor(20_000, '0', epoch + 41_000),
    nextLiveCursor(20_000, '20', epoch + 59_000),
  );
});

test('a cursor that would not advance jumps ahead by 1..3600', () => {
  for (let i = 0; i < 200; i++) {
    const next = Number(nextLiveCursor(20_000, '60', epoch + 45_000));
    assert.ok(next >= 61 && next <= 3660, String(next));
  }
});
