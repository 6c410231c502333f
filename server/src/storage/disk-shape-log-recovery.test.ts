import assert from 'node:assert/strict';
import { appendFile, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { formatLogOffset } from '@sluice/protocol';
import { DiskShapeLog, ShapeLogCorruptError } from './disk-shape-log.js';
import { chunkFiles, makeRoot } from './disk-shape-log-testing.js';
import { at, entry, parseOffset, txGroup, walk, walkEntries } from './shape-log-testing.js';

// Crash recovery and truncation: damage is written into the files by hand, as a crash or a
// partial write would leave it, then open() must give back a consistent prefix of the log.

const root = await makeRoot();
after(() => rm(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => path.join(root, `log-${++dirs}`);

test('open cuts a torn last line and later appends are clean', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 10_000 });
  log.append(txGroup(1, 5));
  await log.close();
  const [file] = await chunkFiles(dir);
  await appendFile(path.join(dir, file!.name), '1_10 {"torn":"é');
  const reopened = await DiskShapeLog.open(dir, { chunkBytes: 10_000 });
  assert.deepEqual(reopened.lastOffset, at(1, 8));
  assert.deepEqual(
    await walkEntries(reopened),
    txGroup(1, 5).map((e) => e.json),
  );
  reopened.append([entry(1, 10)]);
  await reopened.close();
  const text = await readFile(path.join(dir, file!.name), 'utf8');
  assert.ok(!text.includes('torn'));
  assert.ok(text.endsWith(`1_10 ${entry(1, 10).json}\n`));
});

test('open recovers sealed chunks the index lost, and a missing index', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 150 });
  for (let tx = 1; tx <= 20; tx++) log.append(txGroup(tx, 2));
  await log.flush();
  const before = await walk(log);
  await log.close();
  const indexFile = path.join(dir, 'chunks.json');
  const index = JSON.parse(await readFile(indexFile, 'utf8')) as { chunks: unknown[] };
  await writeFile(indexFile, JSON.stringify({ version: 1, chunks: index.chunks.slice(0, -2) }));
  await writeFile(`${indexFile}.tmp`, '{"half":');

  const reopened = await DiskShapeLog.open(dir, { chunkBytes: 150 });
  assert.deepEqual(await walk(reopened), before);
  await reopened.close();
  assert.deepEqual(JSON.parse(await readFile(indexFile, 'utf8')), index);
  assert.ok(!(await readdir(dir)).includes('chunks.json.tmp'));

  await rm(indexFile);
  const rebuilt = await DiskShapeLog.open(dir, { chunkBytes: 150 });
  assert.deepEqual(await walk(rebuilt), before);
  await rebuilt.close();
  assert.deepEqual(JSON.parse(await readFile(indexFile, 'utf8')), index);
});

test('open takes an unindexed chunk a crash left behind the sealed one', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 10_000 });
  log.append(txGroup(1, 2));
  await log.close();
  // As if a flush sealed chunk 1 and wrote chunk 2, then crashed before the index rename.
  await appendFile(path.join(dir, 'chunk-000001.log'), '#sealed\n');
  const lines = txGroup(2, 3).map((e) => `${formatLogOffset(e.offset)} ${e.json}\n`);
  await writeFile(path.join(dir, 'chunk-000002.log'), lines.join('') + '2_6 {"to');
  await writeFile(path.join(dir, 'chunk-000003.log'), '');

  const reopened = await DiskShapeLog.open(dir, { chunkBytes: 10_000 });
  assert.deepEqual((await reopened.read('before-all')).entries.length, 2);
  const rest = await reopened.read(at(1, 2));
  assert.deepEqual(
    rest.entries,
    txGroup(2, 2)
      .map((e) => e.json)
      .concat(txGroup(2, 3)[2]!.json),
  );
  assert.deepEqual(reopened.lastOffset, at(2, 4));
  await reopened.close();
  assert.deepEqual(
    (await chunkFiles(dir)).map((f) => [f.name, f.sealed]),
    [
      ['chunk-000001.log', true],
      ['chunk-000002.log', false],
    ],
  );
});

test('a flush that seals a chunk creates the next one empty; reopening writes into it', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 10_000 });
  log.append(txGroup(0, 3), { sealChunk: true }); // as a snapshot ends
  await log.flush();
  // Created with the seal, under the same directory sync: the first change needs none.
  const created = (await chunkFiles(dir)).map((f) => [f.name, f.sealed, f.lines.length]);
  assert.deepEqual(created, [
    ['chunk-000001.log', true, 3],
    ['chunk-000002.log', false, 0],
  ]);
  await log.close();

  // A crash before the first change: the empty file is the open chunk, not damage.
  const reopened = await DiskShapeLog.open(dir, { chunkBytes: 10_000 });
  reopened.append(txGroup(5, 2));
  await reopened.close();
  const files = await chunkFiles(dir);
  assert.deepEqual(
    files.map((f) => [f.name, f.sealed, f.lines.length]),
    [
      ['chunk-000001.log', true, 3],
      ['chunk-000002.log', false, 2],
    ],
  );
  const again = await DiskShapeLog.open(dir, { chunkBytes: 10_000 });
  assert.deepEqual(
    await walkEntries(again),
    [...txGroup(0, 3), ...txGroup(5, 2)].map((e) => e.json),
  );
  await again.close();
});

test('open cuts invalid lines and every later file; a lost sealed chunk fails', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 10_000 });
  log.append(txGroup(1, 3));
  await log.close();
  await appendFile(path.join(dir, 'chunk-000001.log'), '1_1 {"older":true}\n1_9 {}\n\0\0\0');
  await writeFile(path.join(dir, 'chunk-000002.log'), '5_0 {"later":true}\n');
  const reopened = await DiskShapeLog.open(dir, { chunkBytes: 10_000 });
  assert.deepEqual(
    await walkEntries(reopened),
    txGroup(1, 3).map((e) => e.json),
  );
  await reopened.close();
  assert.deepEqual((await readdir(dir)).sort(), ['chunk-000001.log', 'chunks.json']);

  const sealedDir = freshDir();
  const sealedLog = await DiskShapeLog.create(sealedDir, { chunkBytes: 10 });
  sealedLog.append(txGroup(1, 3));
  await sealedLog.close();
  await rm(path.join(sealedDir, 'chunk-000001.log'));
  await assert.rejects(DiskShapeLog.open(sealedDir, { chunkBytes: 10 }), ShapeLogCorruptError);
});

test('open keeps equal snapshot offsets inside a chunk, never across a chunk boundary', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 10_000 });
  const rows = (op: number, names: string[]) =>
    names.map((name) => ({ offset: at(0, op), json: `{"row":"${name}"}` }));
  log.append(rows(0, ['a', 'b']), { sealChunk: true });
  await log.close();
  // Unindexed chunks a crash left: 0_1 twice is one snapshot chunk, but a chunk that starts
  // with the offset the previous one ended with (0_1 again) breaks the order, and goes.
  const lines = (op: number, names: string[]) =>
    rows(op, names)
      .map((e) => `${formatLogOffset(e.offset)} ${e.json}\n`)
      .join('');
  await writeFile(path.join(dir, 'chunk-000002.log'), `${lines(1, ['c', 'd'])}#sealed\n`);
  await writeFile(path.join(dir, 'chunk-000003.log'), lines(1, ['e']));

  const reopened = await DiskShapeLog.open(dir, { chunkBytes: 10_000 });
  assert.deepEqual(
    (await walk(reopened)).map((r) => [r.entries, r.lastOffset]),
    [
      [rows(0, ['a', 'b']).map((e) => e.json), at(0, 0)],
      [rows(1, ['c', 'd']).map((e) => e.json), at(0, 1)],
    ],
  );
  await reopened.close();
  assert.deepEqual(
    (await chunkFiles(dir)).map((f) => [f.name, f.sealed, f.offsets]),
    [
      ['chunk-000001.log', true, ['0_0', '0_0']],
      ['chunk-000002.log', true, ['0_1', '0_1']],
    ],
  );
});

test('truncateAfter inside the open chunk drops durable and pending entries', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 10_000 });
  log.append(txGroup(1, 5));
  await log.flush();
  log.append(txGroup(2, 2)); // pending, dropped too
  await log.truncateAfter(at(1, 4));
  assert.deepEqual(log.lastOffset, at(1, 4));
  assert.deepEqual(log.durableOffset, at(1, 4));
  const kept = txGroup(1, 3).map((e) => e.json);
  assert.deepEqual(await walkEntries(log), kept);
  log.append([entry(1, 5, 'again')]);
  await log.truncateAfter(at(1, 99)); // nothing after: no change but the flush
  await log.close();
  const reopened = await DiskShapeLog.open(dir, { chunkBytes: 10_000 });
  assert.deepEqual(await walkEntries(reopened), [...kept, entry(1, 5, 'again').json]);
  await reopened.truncateAfter('before-all');
  assert.equal(reopened.lastOffset, undefined);
  assert.equal(reopened.sizeBytes, 0);
  assert.deepEqual(await walkEntries(reopened), []);
  reopened.append([entry(0, 0)]);
  await reopened.close();
  const emptied = await DiskShapeLog.open(dir, { chunkBytes: 10_000 });
  assert.deepEqual(await walkEntries(emptied), [entry(0, 0).json]);
  await emptied.close();
});

test('truncateAfter inside a sealed chunk keeps it sealed and survives reopening', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 200 });
  for (let tx = 1; tx <= 30; tx++) log.append(txGroup(tx, 2));
  await log.flush();
  const files = await chunkFiles(dir);
  const cutFile = files[2]!;
  const cutAt = parseOffset(cutFile.offsets[1]!); // inside the third chunk
  const boundary = parseOffset(files[1]!.offsets.at(-1)!);
  const expected = files
    .flatMap((f) => f.jsons)
    .slice(0, files[0]!.jsons.length + files[1]!.jsons.length + 2);

  const truncating = log.truncateAfter(cutAt);
  assert.throws(() => log.append(txGroup(99, 1)), /during truncateAfter/);
  await truncating;
  assert.deepEqual(log.lastOffset, cutAt);
  assert.deepEqual(await walkEntries(log), expected);
  const third = await log.read(boundary);
  assert.deepEqual(third.entries, cutFile.jsons.slice(0, 2));
  assert.equal(third.reachedEnd, true);
  log.append(txGroup(500, 1));
  await log.flush();
  assert.deepEqual((await log.read(boundary)).entries, cutFile.jsons.slice(0, 2), 'still sealed');
  assert.deepEqual((await log.read(cutAt)).entries, [txGroup(500, 1)[0]!.json]);
  const before = await walk(log);
  await log.close();
  const reopened = await DiskShapeLog.open(dir, { chunkBytes: 200 });
  assert.deepEqual(await walk(reopened), before);

  await reopened.truncateAfter(boundary); // exactly at a chunk's end
  assert.deepEqual(await walkEntries(reopened), expected.slice(0, -2));
  assert.deepEqual((await chunkFiles(dir)).length, 2);
  await reopened.close();
});

test('a failed write refuses further work until the log is reopened', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 10_000 });
  log.append(txGroup(1, 2));
  await log.flush();
  await rm(dir, { recursive: true });
  log.append(txGroup(2, 1), { sealChunk: true }); // the seal rewrites the index: ENOENT
  await assert.rejects(log.flush(), { code: 'ENOENT' });
  assert.throws(() => log.append(txGroup(3, 1)), /failed; reopen it/);
  await assert.rejects(log.flush(), /failed; reopen it/);
  assert.deepEqual(log.durableOffset, at(1, 2));
  await log.close();
});
