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

/** A log whose chunk file exists: its first flush creates it, later ones go to the journal. */
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
  // The second flush went to the journal only: the chunk files hold the first one's lines.
  for (const [i, handle] of handles.entries()) {
    assert.deepEqual(await chunkLines(crashed, handle), expected[i]!.slice(0, 2));
  }
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

test('a seal writes the lines the journal held before it, in order, into the sealed chunk', async () => {
  const { storageDir, storage, log } = await startedStorage();
  log.append(txGroup(2, 3, 'journaled'));
  await log.flush();
  // The first chunk is sealed at 64 kB: this transaction fills it, on the chunk files' own path.
  log.append(txGroup(3, 40, 'y'.repeat(2_000)));
  await log.flush();
  const expected = [
    ...txGroup(1, 2, 'shape-a'),
    ...txGroup(2, 3, 'journaled'),
    ...txGroup(3, 40, 'y'.repeat(2_000)),
  ].map((e) => e.json);
  const [sealed] = await chunkFiles(path.join(storageDir, 'shapes', 'shape-a'));
  assert.equal(sealed?.sealed, true);
  assert.deepEqual(sealed.jsons, expected.slice(0, sealed.jsons.length));
  assert.deepEqual(await afterCrash(storageDir, 'shape-a'), expected);
  await log.close();
  await storage.close();
});
