import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isVisibleTo, type TransactionVisibility } from './transaction-visibility.js';

const snapshot: TransactionVisibility = {
  xmin: '100',
  xmax: '110',
  xip: ['100', '105'],
  lsnBound: '5000',
};

test('committed before the snapshot: visible; running or later: not', () => {
  assert.equal(isVisibleTo(snapshot, 99, 4000n), true);
  assert.equal(isVisibleTo(snapshot, 100, 4000n), false, 'in progress (xip)');
  assert.equal(isVisibleTo(snapshot, 101, 4000n), true, 'between xmin and xmax, not running');
  assert.equal(isVisibleTo(snapshot, 105, 4000n), false, 'in progress (xip)');
  assert.equal(isVisibleTo(snapshot, 110, 4000n), false, 'xmax itself started after');
  assert.equal(isVisibleTo(snapshot, 200, 4000n), false);
});

test('past the LSN bound nothing is visible, whatever the xid', () => {
  assert.equal(isVisibleTo(snapshot, 50, 5001n), false);
});

test('64-bit snapshot xids compare with 32-bit replication xids across an epoch', () => {
  const epoch1 = (n: bigint) => ((1n << 32n) + n).toString();
  const wrapped: TransactionVisibility = {
    xmin: epoch1(5n),
    xmax: epoch1(10n),
    xip: [],
    lsnBound: '100',
  };
  assert.equal(isVisibleTo(wrapped, 4, 1n), true);
  assert.equal(isVisibleTo(wrapped, 0xfffffff0, 1n), true, 'previous epoch, long committed');
  assert.equal(isVisibleTo(wrapped, 12, 1n), false);
});
