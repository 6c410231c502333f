import assert from 'node:assert/strict';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import type { LogOffset } from '@sluice/protocol';
import { DiskShapeLog } from '../storage/disk-shape-log.js';
import type { LogEntry } from '../storage/shape-storage.js';
import { chunkFiles, makeRoot } from '../storage/disk-shape-log-testing.js';
import { walkEntries } from '../storage/shape-log-testing.js';
import { cutTornTransaction } from './cut-torn-transaction.js';

const root = await makeRoot();
after(() => rm(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => path.join(root, `torn-${++dirs}`);
const CHUNK_BYTES = 300;

const at = (tx: bigint, op: number): LogOffset => ({ tx, op });

/** A transaction's changes as replication writes them: `last` only on the final one. */
function transaction(lsn: bigint, count: number): LogEntry[] {
  return Array.from({ length: count }, (_, i) => ({
    offset: at(lsn, i * 2),
    json: JSON.stringify({
      key: `"public"."items"/"${lsn}-${i}"`,
      value: { id: `${lsn}-${i}`, title: 'x'.repeat(40) },
      headers: {
        operation: 'insert',
        lsn: String(lsn),
        op_position: i * 2,
        ...(i === count - 1 ? { last: true } : {}),
      },
    }),
  }));
}

const snapshot: LogEntry[] = [
  { offset: at(0n, 0), json: '{"key":"k1","value":{"id":"1"},"headers":{"operation":"insert"}}' },
  { offset: at(0n, 0), json: '{"headers":{"control":"snapshot-end","xmin":"1"}}' },
];

async function writeLog(dir: string, transactions: LogEntry[][]): Promise<void> {
  const log = await DiskShapeLog.create(dir, { chunkBytes: CHUNK_BYTES });
  log.append(snapshot, { sealChunk: true });
  for (const entries of transactions) log.append(entries);
  await log.close();
}

test('a log ending inside a transaction is cut back to the previous transaction, once', async () => {
  const dir = freshDir();
  const whole = transaction(100n, 2);
  const large = transaction(200n, 9); // about 1 kB: spans several 300-byte chunks
  await writeLog(dir, [whole, large]);
  const files = await chunkFiles(dir);
  assert.ok(files.filter((f) => f.offsets.some((o) => o.startsWith('200_'))).length >= 3);
  // A crash after the first chunks of the transaction were durable, before its last one was
  // written: that chunk file never existed.
  const lastFile = files.at(-1)!;
  assert.equal(lastFile.sealed, false);
  assert.ok(lastFile.offsets.includes('200_16'));
  await rm(path.join(dir, lastFile.name));

  const reopened = await DiskShapeLog.open(dir, { chunkBytes: CHUNK_BYTES });
  assert.equal(reopened.lastOffset?.tx, 200n, 'the log ends inside transaction 200');
  assert.equal(await cutTornTransaction(reopened), true);
  assert.deepEqual(reopened.lastOffset, at(100n, 2));
  const expected = [...snapshot, ...whole].map((e) => e.json);
  assert.deepEqual(await walkEntries(reopened), expected);
  // The replay appends the transaction whole again.
  reopened.append(large);
  await reopened.close();

  const again = await DiskShapeLog.open(dir, { chunkBytes: CHUNK_BYTES });
  assert.equal(await cutTornTransaction(again), false);
  assert.deepEqual(await walkEntries(again), [...expected, ...large.map((e) => e.json)]);
  await again.close();
});

test('logs that end at a transaction boundary or inside the snapshot are left alone', async () => {
  for (const transactions of [
    [],
    [transaction(100n, 1)],
    [transaction(100n, 3), transaction(300n, 12)],
  ]) {
    const dir = freshDir();
    await writeLog(dir, transactions);
    const before = await readdir(dir);
    const log = await DiskShapeLog.open(dir, { chunkBytes: CHUNK_BYTES });
    const entries = await walkEntries(log);
    assert.equal(await cutTornTransaction(log), false);
    assert.deepEqual(await walkEntries(log), entries);
    await log.close();
    assert.deepEqual(await readdir(dir), before);
  }
  const empty = await DiskShapeLog.create(freshDir(), { chunkBytes: CHUNK_BYTES });
  assert.equal(await cutTornTransaction(empty), false);
  await empty.close();
});

test('subquery shape transactions ending with a move-out or a move-in snapshot-end are kept', async () => {
  const moveOut: LogEntry[] = [
    {
      offset: at(100n, 0),
      json: '{"headers":{"event":"move-out","patterns":[],"txids":["5"],"last":true}}',
    },
  ];
  const moveIn: LogEntry[] = [
    { offset: at(200n, 1), json: '{"headers":{"event":"move-in","patterns":[],"txids":["6"]}}' },
    {
      offset: at(200n, 2),
      json: '{"key":"k2","value":{"id":"2"},"headers":{"operation":"insert"}}',
    },
    { offset: at(200n, 3), json: '{"headers":{"control":"snapshot-end","xmin":"7","last":true}}' },
  ];
  for (const transactions of [[moveOut], [moveOut, moveIn]]) {
    const dir = freshDir();
    await writeLog(dir, transactions);
    const log = await DiskShapeLog.open(dir, { chunkBytes: CHUNK_BYTES });
    const entries = await walkEntries(log);
    assert.equal(await cutTornTransaction(log), false);
    assert.deepEqual(await walkEntries(log), entries);
    await log.close();
  }
  // A move-in whose snapshot-end was lost is still cut, and so is a move-out whose rows were
  // lost after it (the transaction's last entry carries `last`, wherever it is).
  const torn: LogEntry[] = [
    { offset: at(300n, 0), json: moveOut[0]!.json.replace(',"last":true', '') },
  ];
  for (const transactions of [
    [moveOut, moveIn.slice(0, 2)],
    [moveOut, torn],
  ]) {
    const dir = freshDir();
    await writeLog(dir, transactions);
    const log = await DiskShapeLog.open(dir, { chunkBytes: CHUNK_BYTES });
    assert.equal(await cutTornTransaction(log), true);
    assert.deepEqual(log.lastOffset, at(100n, 0));
    await log.close();
  }
});
