import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { RelationInfo, Transaction } from '../pg/transaction.js';
import { DiskShapeLog } from '../storage/disk-shape-log.js';
import type { FilterNode } from '../where/filter-spec.js';
import { Shape, type ShapeMetadata } from './shape.js';

// A shape compiles its where clause on its first change, not when it is made or reopened (an
// idle shape holds no evaluator): the first change it is routed must still be filtered exactly.

const root = await mkdtemp(path.join(os.tmpdir(), 'sluice-shape-'));
after(() => rm(root, { recursive: true, force: true }));
let logs = 0;

const relation: RelationInfo = {
  oid: 7,
  schema: 'public',
  name: 'items',
  columns: [],
  keyColumns: ['id'],
};
const int4 = { scalar: 'int4', array: false } as const;
const ownerIsFive: FilterNode = {
  op: 'compare',
  operator: '=',
  domain: int4,
  text: undefined,
  left: { op: 'column', name: 'owner', type: int4 },
  right: { op: 'const', type: int4, value: '5' },
};

function metadata(filterRoot: FilterNode): ShapeMetadata {
  return {
    handle: `h-${logs}`,
    definition: {
      table: { schema: 'public', name: 'items' },
      columns: undefined,
      replica: 'default',
      log: 'full',
      where: 'owner = 5',
    },
    relationOid: relation.oid,
    context: {
      schema: 'public',
      table: 'items',
      columns: ['id', 'owner'],
      keyColumns: ['id'],
      replica: 'default',
    },
    schemaHeader: '{}',
    columnSignature: '[]',
    snapshot: undefined,
    snapshotComplete: true,
    filter: { source: 'owner = 5', root: filterRoot },
  };
}

function inserts(
  commitLsn: bigint,
  owners: number[],
): [Transaction, Parameters<Shape['applyTransaction']>[1]] {
  const changes = owners.map((owner, i) => ({
    kind: 'insert' as const,
    relation,
    newRow: { id: `${commitLsn}-${i}`, owner: String(owner) },
  }));
  const transaction = { xid: Number(commitLsn), commitLsn, endLsn: commitLsn + 1n, changes };
  return [transaction, changes.map((change, position) => ({ change, position }))];
}

test('a shape reopened with its clause never used filters its first change exactly', async () => {
  const dir = path.join(root, `log-${++logs}`);
  const created = new Shape(
    metadata(ownerIsFive),
    await DiskShapeLog.create(dir, { chunkBytes: 10_000 }),
  );
  await created.log.close();
  // Reopened as after a restart: nothing has evaluated the clause yet.
  const shape = new Shape(
    metadata(ownerIsFive),
    await DiskShapeLog.open(dir, { chunkBytes: 10_000 }),
  );
  assert.equal(shape.applyTransaction(...inserts(100n, [4, 6])), false);
  assert.equal(shape.applyTransaction(...inserts(200n, [5, 4, 5])), true);
  await shape.log.flush();
  const { entries } = await shape.log.read('before-all');
  const ids = entries.map((json) => (JSON.parse(json) as { value: { id: string } }).value.id);
  assert.deepEqual(ids, ['200-0', '200-2']);
  await shape.log.close();
});

test('a stored clause that cannot be compiled is refused when the shape is made', async () => {
  const log = await DiskShapeLog.create(path.join(root, `log-${++logs}`), { chunkBytes: 10_000 });
  const broken = { op: 'and' } as unknown as FilterNode; // no operands: damaged on disk
  assert.throws(() => new Shape(metadata(broken), log));
  await log.close();
});

test('a shape drops a replayed commit its log already holds, even one appended after the shape was made', async () => {
  const dir = path.join(root, `log-${++logs}`);
  const shape = new Shape(
    metadata(ownerIsFive),
    await DiskShapeLog.create(dir, { chunkBytes: 10_000 }),
  );
  try {
    assert.equal(shape.applyTransaction(...inserts(10n, [5])), true);
    // What another server (the previous writer of a shared storage) stored and this one's log
    // took in since the shape was made: commit 20, written to the log directly.
    const other = new Shape(metadata(ownerIsFive), shape.log);
    assert.equal(other.applyTransaction(...inserts(20n, [5])), true);
    await shape.log.flush();
    // The slot replays commit 20 to this shape: already held, dropped (not a broken order).
    assert.equal(shape.applyTransaction(...inserts(20n, [5])), false);
    assert.equal(shape.applyTransaction(...inserts(15n, [5])), false);
    assert.equal(shape.applyTransaction(...inserts(30n, [5])), true);
    assert.deepEqual(shape.log.lastOffset, { tx: 30n, op: 0 });
  } finally {
    await shape.log.close();
  }
});
