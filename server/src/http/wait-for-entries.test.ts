import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Shape, type ShapeMetadata } from '../shapes/shape.js';
import { DiskShapeLog } from '../storage/disk-shape-log.js';
import { waitForEntries } from './log-answer.js';

// A held live request ends only with news, its timeout, deletion or shutdown (docs/protocol.md
// §3.6): a wake-up with nothing after its offset (a creation ending, a reader's refresh that
// found nothing) keeps it held.

const root = await mkdtemp(path.join(os.tmpdir(), 'sluice-wait-'));
after(() => rm(root, { recursive: true, force: true }));
let logs = 0;

const metadata = (): ShapeMetadata => ({
  handle: `h-${logs}`,
  definition: {
    table: { schema: 'public', name: 'items' },
    columns: undefined,
    replica: 'default',
    log: 'full',
    where: undefined,
  },
  relationOid: 7,
  context: {
    schema: 'public',
    table: 'items',
    columns: ['id'],
    keyColumns: ['id'],
    replica: 'default',
  },
  schemaHeader: '{}',
  columnSignature: '[]',
  snapshot: undefined,
  snapshotComplete: true,
  filter: undefined,
});

/** A shape whose log holds one durable change, at `1_0`. */
async function shapeWithOneChange(): Promise<Shape> {
  const log = await DiskShapeLog.create(path.join(root, `log-${++logs}`), { chunkBytes: 10_000 });
  const shape = new Shape(metadata(), log);
  log.append([{ offset: { tx: 1n, op: 0 }, json: '{"n":1}' }]);
  await log.flush();
  return shape;
}

const at = (tx: bigint) => ({ tx, op: 0 });

test('a live request woken with nothing new stays held, and is answered by the next change', async () => {
  const shape = await shapeWithOneChange();
  const longPoll = { timeoutMs: 5_000, closing: new AbortController().signal };
  const started = Date.now();
  const waiting = waitForEntries(shape, at(1n), true, longPoll);
  setTimeout(() => shape.notify(), 50); // woken with nothing after 1_0
  setTimeout(() => {
    shape.log.append([{ offset: at(2n), json: '{"n":2}' }]);
    void shape.log.flush().then(() => shape.notify());
  }, 300);
  assert.equal(await waiting, 'ready');
  assert.ok(Date.now() - started >= 290, 'answered only once the change was durable');
  await shape.log.close();
});

test('a live request woken with nothing new times out at its own deadline, not at the wake', async () => {
  const shape = await shapeWithOneChange();
  const longPoll = { timeoutMs: 400, closing: new AbortController().signal };
  const started = Date.now();
  const waiting = waitForEntries(shape, at(1n), true, longPoll);
  setTimeout(() => shape.notify(), 50);
  setTimeout(() => shape.notify(), 200);
  assert.equal(await waiting, 'timed-out');
  assert.ok(Date.now() - started >= 390, `ended after ${Date.now() - started} ms`);
  await shape.log.close();
});

test('a held live request ends at once on shutdown and on deletion', async () => {
  const shape = await shapeWithOneChange();
  const closing = new AbortController();
  const waiting = waitForEntries(shape, at(1n), true, {
    timeoutMs: 5_000,
    closing: closing.signal,
  });
  closing.abort();
  shape.notify(); // as ShapeRegistry.wakeAll does
  assert.equal(await waiting, 'closing');
  const deleted = waitForEntries(shape, at(1n), true, {
    timeoutMs: 5_000,
    closing: new AbortController().signal,
  });
  shape.markDeleted();
  assert.equal(await deleted, 'deleted');
  await shape.log.close();
});
