import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  bigIntToLsn,
  compareLogOffsets,
  formatLogOffset,
  lsnToBigInt,
  parseLogOffset,
  parseRequestOffset,
  SNAPSHOT_END,
} from './log-offset.js';

test('offsets parse and format round-trip, including LSNs beyond 2^53', () => {
  for (const text of [
    '0_0',
    '0_17',
    '0_inf',
    '123_4',
    '18446744073709551615_2',
    '9007199254740993_inf',
  ]) {
    const offset = parseLogOffset(text);
    assert.ok(offset, text);
    assert.equal(formatLogOffset(offset), text);
  }
  assert.equal(parseLogOffset('9007199254740993_0')?.tx, 9007199254740993n);
});

test('malformed offsets are rejected', () => {
  for (const text of [
    '',
    '-1',
    '1',
    '1_',
    '_1',
    '1_-2',
    'a_b',
    '1_2_3',
    '1.5_2',
    ' 1_2',
    '1_99999999999999999999',
    '0x1_2',
  ]) {
    assert.equal(parseLogOffset(text), undefined, text);
  }
});

test('request offsets add -1 and now', () => {
  assert.equal(parseRequestOffset('-1'), 'before-all');
  assert.equal(parseRequestOffset('now'), 'now');
  assert.deepEqual(parseRequestOffset('5_inf'), { tx: 5n, op: Infinity });
  assert.equal(parseRequestOffset('-2'), undefined);
});

test('offsets compare tx first, then op, inf last', () => {
  const order = ['0_0', '0_1', '0_10', '0_inf', '1_0', '1_inf', '100_0'].map((t) =>
    parseLogOffset(t)!,
  );
  for (let i = 0; i < order.length; i++) {
    for (let j = 0; j < order.length; j++) {
      assert.equal(Math.sign(compareLogOffsets(order[i]!, order[j]!)), Math.sign(i - j));
    }
  }
  assert.equal(compareLogOffsets(SNAPSHOT_END, parseLogOffset('0_inf')!), 0);
});

test('LSNs convert between X/Y and decimal', () => {
  assert.equal(lsnToBigInt('0/16B3748'), 0x16b3748n);
  assert.equal(lsnToBigInt('1/0'), 4294967296n);
  assert.equal(bigIntToLsn(lsnToBigInt('AB/CDEF0123')), 'AB/CDEF0123');
  assert.throws(() => lsnToBigInt('nope'));
});
