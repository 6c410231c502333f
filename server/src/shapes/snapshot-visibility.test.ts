import assert from 'node:assert/strict';
import { test } from 'node:test';
import { visibleInSnapshot, type SnapshotVisibility } from './snapshot-visibility.js';

const snapshot: SnapshotVisibility = {
  xmin: '100',
  xmax: '110',
  xip: ['100', '105'],
  lsnBound: '5000',
};

test('committed before the snapshot: visible; running or later: not', () => {
  assert.equal(visibleInSnapshot(snapshot, 99, 4000n), true);
  assert.equal(visibleInSnapshot(snapshot, 100, 4000n), false, 'in progress (xip)');
  assert.equal(visibleInSnapshot(snapshot, 101, 4000n), true, 'between xmin and xmax, not running');
  assert.equal(visibleInSnapshot(snapshot, 105, 4000n), false, 'in progress (xip)');
  assert.equal(visibleInSnapshot(snapshot, 110, 4000n), false, 'xmax itself started after');
  assert.equal(visibleInSnapshot(snapshot, 200, 4000n), false);
});

test('past the LSN bound nothing is visible, whatever the xid', () => {
  assert.equal(visibleInSnapshot(snapshot, 50, 5001n), false);
});

test('64-bit snapshot xids compare with 32-bit replication xids across an epoch', () => {
  const epoch1 = (n: bigint) => ((1n << 32n) + n).toString();
  const wrapped: SnapshotVisibility = {
    xmin: epoch1(5n),
    xmax: epoch1(10n),
    xip: [],
    lsnBound: '100',
  };
  assert.equal(visibleInSnapshot(wrapped, 4, 1n), true);
  assert.equal(visibleInSnapshot(wrapped, 0xfffffff0, 1n), true, 'previous epoch, long committed');
  assert.equal(visibleInSnapshot(wrapped, 12, 1n), false);
});
