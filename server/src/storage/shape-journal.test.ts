import assert from 'node:assert/strict';
import { appendFile, cp, readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { ChunkCache } from './chunk-cache.js';
import { chunkFiles, makeRoot } from './disk-shape-log-testing.js';
import { DiskShapeLog } from './disk-shape-log.js';
import { DiskShapeStorage } from './disk-shape-storage.js';
import { ShapeJournal } from './shape-journal.js';
import type { ShapeLog } from './shape-storage.js';
import { at, txGroup, walkEntries } from './shape-log-testing.js';

const root = await makeRoot();
after(() => rm(root, { recursive: true, force: true }));
let storages = 0;
const freshDir = () => path.join(root, `storage-${++storages}`);

function diskStorage(storageDir: string): DiskShapeStorage {
  return new DiskShapeStorage({
    storageDir,
    chunkBytes: 100_000,
    chunkCache: new ChunkCache(1_000_000),
  });
}

/**
 * A crash as the disk sees it: a copy of the folder while the server runs, with what it wrote to
 * its files and nothing of what it still meant to write (page cache included: a killed process
 * loses nothing the kernel has, so only what was written counts).
 */
async function crashCopy(storageDir: string): Promise<string> {
  const copy = freshDir();
  await cp(storageDir, copy, { recursive: true });
  return copy;
}

/** A log with two entries, flushed (through the journal: its chunk file does not exist yet). */
async function startedLog(storage: DiskShapeStorage, handle: string): Promise<ShapeLog> {
  const log = await storage.createLog(handle);
  log.append(txGroup(1, 2, handle));
  await log.flush();
  return log;
}

/** A fresh disk storage with one started log, `shape-a`. */
async function startedStorage() {
  const storageDir = freshDir();
  const storage = diskStorage(storageDir);
  return { storageDir, storage, log: await startedLog(storage, 'shape-a') };
}

/** The entries of `handle`'s log as a server restarted after a crash now would read them. */
async function afterCrash(storageDir: string, handle: string): Promise<string[]> {
  const log = await diskStorage(await crashCopy(storageDir)).openLog(handle);
  try {
    return await walkEntries(log);
  } finally {
    await log.close();
  }
}

const chunkLines = async (storageDir: string, handle: string) =>
  (await chunkFiles(path.join(storageDir, 'shapes', handle))).flatMap((file) => file.jsons);

const segments = async (storageDir: string) =>
  (await readdir(path.join(storageDir, 'journal'))).filter((name) => name.endsWith('.log'));

test('flushed lines are durable in the journal before their chunk files; a restart writes them back', async () => {
  const storageDir = freshDir();
  const storage = diskStorage(storageDir);
  const handles = ['shape-a', 'shape-b', 'shape-c'];
  const logs = await Promise.all(handles.map((handle) => startedLog(storage, handle)));
  for (const [i, log] of logs.entries()) log.append(txGroup(2 + i, 3, handles[i]));
  await Promise.all(logs.map((log) => log.flush()));
  const expected = logs.map((_, i) =>
    [...txGroup(1, 2, handles[i]), ...txGroup(2 + i, 3, handles[i])].map((e) => e.json),
  );
  for (const [i, log] of logs.entries()) assert.deepEqual(await walkEntries(log), expected[i]);

  const crashed = await crashCopy(storageDir);
  // Both flushes went to the journal only: no chunk file was made yet.
  for (const handle of handles) assert.deepEqual(await chunkLines(crashed, handle), []);
  assert.equal((await segments(crashed)).length, 1);

  const restarted = diskStorage(crashed);
  assert.deepEqual((await restarted.listShapes()).sort(), handles);
  for (const [i, handle] of handles.entries()) {
    assert.deepEqual(await chunkLines(crashed, handle), expected[i]);
    const reopened = await restarted.openLog(handle);
    assert.deepEqual(await walkEntries(reopened), expected[i]);
    await reopened.close();
  }
  // The old segment is gone once written back; a new, empty one takes the next records.
  assert.equal((await segments(crashed)).length, 1);
  await restarted.close();
  assert.deepEqual(await segments(crashed), []);

  for (const log of logs) await log.close();
  await storage.close();
  // Closing writes every journaled line into the files, and the journal is left empty.
  for (const [i, handle] of handles.entries()) {
    assert.deepEqual(await chunkLines(storageDir, handle), expected[i]);
  }
  assert.deepEqual(await segments(storageDir), []);
});

test('a torn last record (a crash during its write) is left out, what came before it is kept', async () => {
  const { storageDir, storage, log } = await startedStorage();
  log.append(txGroup(2, 2, 'kept'));
  await log.flush();
  const crashed = await crashCopy(storageDir);
  const [segment] = await segments(crashed);
  // The start of a record whose body never arrived, then a record whose checksum is wrong.
  await appendFile(path.join(crashed, 'journal', segment!), Buffer.from([0, 0, 0, 200, 1, 2]));
  const restarted = diskStorage(crashed);
  const reopened = await restarted.openLog('shape-a');
  const expected = [...txGroup(1, 2, 'shape-a'), ...txGroup(2, 2, 'kept')].map((e) => e.json);
  assert.deepEqual(await walkEntries(reopened), expected);
  await reopened.close();
  await restarted.close();
  await log.close();
  await storage.close();
});

test('a removed shape is forgotten: a new shape in its folder never gets its journaled lines', async () => {
  const { storageDir, storage, log: old } = await startedStorage();
  old.append(txGroup(2, 6, 'x'.repeat(200)));
  await old.flush();
  await old.destroy();
  await storage.removeShape('shape-a');
  // The log forgot itself as it was destroyed: removing the shape after it writes no second
  // record (each costs a journal write and sync).
  const [segment] = await segments(storageDir);
  const journaled = await readFile(path.join(storageDir, 'journal', segment!));
  const forget = Buffer.from([2, 0, 'shape-a'.length, ...Buffer.from('shape-a')]);
  let forgets = 0;
  for (let at = journaled.indexOf(forget); at !== -1; at = journaled.indexOf(forget, at + 1)) {
    forgets++;
  }
  assert.equal(forgets, 1);
  const anew = await startedLog(storage, 'shape-a');
  assert.deepEqual(
    await afterCrash(storageDir, 'shape-a'),
    txGroup(1, 2, 'shape-a').map((e) => e.json),
  );
  await anew.close();
  await storage.close();
});

test('a cut is never undone by the journal: cut lines are not written back after a crash', async () => {
  const { storageDir, storage, log } = await startedStorage();
  log.append(txGroup(2, 3, 'cut'));
  await log.flush();
  // Keeps 2_0: the two lines after it were journaled, and must stay cut.
  await log.truncateAfter(at(2, 0));
  const kept = [...txGroup(1, 2, 'shape-a'), ...txGroup(2, 1, 'cut')].map((e) => e.json);
  assert.deepEqual(await afterCrash(storageDir, 'shape-a'), kept);

  log.append(txGroup(3, 1, 'y'));
  await log.flush();
  const expected = [...kept, ...txGroup(3, 1, 'y').map((e) => e.json)];
  assert.deepEqual(await afterCrash(storageDir, 'shape-a'), expected);
  assert.deepEqual(await walkEntries(log), expected);
  await log.close();
  await storage.close();
});

test('a full segment is checkpointed by itself: the chunk files get the lines, the segment goes', async () => {
  const root = freshDir();
  const shapesDir = path.join(root, 'shapes');
  const journalDir = path.join(root, 'journal');
  // Every write fills a segment of one byte: each is checkpointed once written.
  const journal = await ShapeJournal.open(journalDir, shapesDir, {
    segmentBytes: 1,
    checkpointMs: 60_000,
  });
  const dir = path.join(shapesDir, 'shape-a');
  const log = await DiskShapeLog.create(dir, { chunkBytes: 100_000, journal });
  log.append(txGroup(1, 2, 'first'));
  await log.flush(); // creates the chunk file: its own write and sync
  log.append(txGroup(2, 3, 'journaled'));
  await log.flush();
  const expected = [...txGroup(1, 2, 'first'), ...txGroup(2, 3, 'journaled')].map((e) => e.json);
  const filed = async () => (await chunkFiles(dir)).flatMap((file) => file.jsons);
  for (let tries = 0; (await filed()).length < expected.length; tries++) {
    assert.ok(tries < 200, 'the checkpoint wrote the lines into the chunk file');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.deepEqual(await filed(), expected);
  await journal.checkpoint();
  const left = (await readdir(journalDir)).filter((name) => name.endsWith('.log'));
  assert.equal(left.length, 1, 'only the new, empty segment is left');
  await log.close();
  await journal.close();
  assert.deepEqual(await readdir(journalDir), []);
});

test('a large flush goes to the chunk files, after the lines the journal held before it, in order', async () => {
  const { storageDir, storage, log } = await startedStorage();
  log.append(txGroup(2, 3, 'journaled'));
  await log.flush();
  // More than a journaled flush may hold (1 MiB): written to the files directly, sealing chunks
  // (64 kB, then 100 kB) on the way.
  log.append(txGroup(3, 600, 'y'.repeat(2_000)));
  await log.flush();
  const expected = [
    ...txGroup(1, 2, 'shape-a'),
    ...txGroup(2, 3, 'journaled'),
    ...txGroup(3, 600, 'y'.repeat(2_000)),
  ].map((e) => e.json);
  const files = await chunkFiles(path.join(storageDir, 'shapes', 'shape-a'));
  assert.deepEqual(
    files.map((file) => file.sealed),
    files.map((_, i) => i < files.length - 1),
  );
  assert.ok(files.length > 10);
  assert.deepEqual(
    files.flatMap((file) => file.jsons),
    expected,
  );
  assert.deepEqual(await afterCrash(storageDir, 'shape-a'), expected);
  await log.close();
  await storage.close();
});

/**
 * A log on a journal of its own, laid out as the disk storage lays them out (so `afterCrash`
 * reopens it), with a checkpoint only when the test asks for one.
 */
async function journaledLog(chunkCache?: ChunkCache) {
  const storageDir = freshDir();
  const journal = await ShapeJournal.open(
    path.join(storageDir, 'journal'),
    path.join(storageDir, 'shapes'),
    { segmentBytes: 1 << 30, checkpointMs: 3_600_000 },
  );
  const dir = path.join(storageDir, 'shapes', 'shape-a');
  const log = await DiskShapeLog.create(dir, { chunkBytes: 100_000, journal, chunkCache });
  return { storageDir, dir, journal, log };
}

test('seals go through the journal: the files, the next chunk and the index follow at the checkpoint', async () => {
  const { storageDir, dir, journal, log } = await journaledLog();
  log.append(txGroup(1, 2, 'shape-a'));
  // Fills the first chunk (64 kB) and seals it, then a transaction into the second.
  log.append(txGroup(2, 40, 'y'.repeat(2_000)));
  log.append(txGroup(3, 2, 'after'));
  await log.flush();
  const expected = [
    ...txGroup(1, 2, 'shape-a'),
    ...txGroup(2, 40, 'y'.repeat(2_000)),
    ...txGroup(3, 2, 'after'),
  ].map((e) => e.json);
  assert.deepEqual(await walkEntries(log), expected);
  // Durable in the journal only: no chunk file yet, the index names no chunk.
  assert.deepEqual(await chunkFiles(dir), []);
  const indexed = async () => {
    const index = JSON.parse(await readFile(path.join(dir, 'chunks.json'), 'utf8')) as {
      chunks: { number: number }[];
    };
    return index.chunks.map((chunk) => chunk.number);
  };
  assert.deepEqual(await indexed(), []);
  // A crash now: the journal makes both chunk files, the first one sealed, and reopening
  // indexes it.
  assert.deepEqual(await afterCrash(storageDir, 'shape-a'), expected);

  await journal.checkpoint();
  const files = await chunkFiles(dir);
  assert.deepEqual(
    files.map((file) => [file.name, file.sealed]),
    [
      ['chunk-000001.log', true],
      ['chunk-000002.log', false],
    ],
  );
  assert.deepEqual(
    files.flatMap((file) => file.jsons),
    expected,
  );
  assert.deepEqual(await indexed(), [1]);
  assert.deepEqual(await afterCrash(storageDir, 'shape-a'), expected);
  await log.close();
  await journal.close();
});

test('a cut inside a chunk sealed through the journal completes it first and is never undone', async () => {
  const { storageDir, journal, log } = await journaledLog();
  log.append(txGroup(1, 40, 'z'.repeat(2_000)));
  log.append(txGroup(2, 2, 'open'));
  await log.flush();
  // Keeps the first 20 entries (ops 0 to 38) of the sealed chunk.
  await log.truncateAfter(at(1, 38));
  const kept = txGroup(1, 20, 'z'.repeat(2_000)).map((e) => e.json);
  assert.deepEqual(await walkEntries(log), kept);
  assert.deepEqual(await afterCrash(storageDir, 'shape-a'), kept);
  log.append(txGroup(3, 1, 'next'));
  await log.flush();
  const expected = [...kept, ...txGroup(3, 1, 'next').map((e) => e.json)];
  assert.deepEqual(await afterCrash(storageDir, 'shape-a'), expected);
  await log.close();
  await journal.close();
});

test('a checkpoint writes a few logs at a time, every one of them', async () => {
  const storageDir = freshDir();
  const journal = await ShapeJournal.open(
    path.join(storageDir, 'journal'),
    path.join(storageDir, 'shapes'),
    { segmentBytes: 1 << 30, checkpointMs: 3_600_000 },
  );
  let running = 0;
  let most = 0;
  const written: number[] = [];
  const clients = Array.from({ length: 100 }, (_, i) => ({
    async checkpoint() {
      most = Math.max(most, ++running);
      await new Promise((resolve) => setTimeout(resolve, 2));
      running--;
      written.push(i);
    },
  }));
  await Promise.all(
    clients.map((client, i) => journal.record(client, `shape-${i}`, 1, 0, [Buffer.from('x\n')])),
  );
  await journal.checkpoint();
  assert.deepEqual(
    written.sort((a, b) => a - b),
    clients.map((_, i) => i),
  );
  assert.ok(most > 1 && most <= 16, `${most} logs written at once`);
  await journal.close();
});

test('a large flush after a seal through the journal completes that chunk first, and indexes it', async () => {
  const { storageDir, dir, journal, log } = await journaledLog();
  // Journaled: the first chunk (64 kB) sealed, two lines in the second.
  log.append(txGroup(1, 40, 'z'.repeat(2_000)));
  log.append(txGroup(2, 2, 'open'));
  await log.flush();
  assert.deepEqual(await chunkFiles(dir), []);
  // Direct: more than 1 MiB.
  log.append(txGroup(3, 600, 'y'.repeat(2_000)));
  await log.flush();
  const expected = [
    ...txGroup(1, 40, 'z'.repeat(2_000)),
    ...txGroup(2, 2, 'open'),
    ...txGroup(3, 600, 'y'.repeat(2_000)),
  ].map((e) => e.json);
  const files = await chunkFiles(dir);
  assert.deepEqual(
    files.map((file) => file.sealed),
    files.map((_, i) => i < files.length - 1),
  );
  // Every line once, in order: the second chunk's journaled lines went in its own write.
  assert.deepEqual(
    files.flatMap((file) => file.jsons),
    expected,
  );
  const index = JSON.parse(await readFile(path.join(dir, 'chunks.json'), 'utf8')) as {
    chunks: { number: number }[];
  };
  assert.deepEqual(
    index.chunks.map((chunk) => chunk.number),
    files.slice(0, -1).map((_, i) => i + 1),
  );
  assert.deepEqual(await afterCrash(storageDir, 'shape-a'), expected);
  await log.close();
  await journal.close();
});

test('a chunk sealed through the journal is read from memory until its file is complete', async () => {
  // A cache of nothing: every read of a sealed chunk asks the log for it.
  const { dir, journal, log } = await journaledLog(new ChunkCache(0));
  log.append(txGroup(1, 40, 'z'.repeat(2_000)));
  log.append(txGroup(2, 1, 'open'));
  await log.flush();
  const expected = [...txGroup(1, 40, 'z'.repeat(2_000)), ...txGroup(2, 1, 'open')];
  assert.deepEqual(
    await walkEntries(log),
    expected.map((e) => e.json),
  );
  assert.deepEqual(await chunkFiles(dir), []);
  await journal.checkpoint();
  // Read from its file now.
  assert.equal((await chunkFiles(dir))[0]?.sealed, true);
  assert.deepEqual(
    await walkEntries(log),
    expected.map((e) => e.json),
  );
  await log.close();
  await journal.close();
});
