import assert from 'node:assert/strict';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { SNAPSHOT_END } from '@sluice/protocol';
import { ChunkCache } from './chunk-cache.js';
import { DiskShapeLog } from './disk-shape-log.js';
import { chunkFiles, makeRoot } from './disk-shape-log-testing.js';
import { at, entry, parseOffset, txGroup, walk, walkEntries } from './shape-log-testing.js';

const root = await makeRoot();
after(() => rm(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => path.join(root, `log-${++dirs}`);

test('create refuses a non-empty directory and starts empty', async () => {
  const busy = freshDir();
  await mkdir(busy);
  await writeFile(path.join(busy, 'other'), 'x');
  await assert.rejects(DiskShapeLog.create(busy, { chunkBytes: 100 }), /not empty/);

  const log = await DiskShapeLog.create(freshDir(), { chunkBytes: 100 });
  assert.equal(log.lastOffset, undefined);
  assert.equal(log.durableOffset, undefined);
  assert.equal(log.sizeBytes, 0);
  assert.deepEqual(await log.read('before-all'), {
    entries: [],
    lastOffset: undefined,
    reachedEnd: true,
  });
  await log.flush();
  await log.close();
});

test('an entry must be one non-empty line of JSON (the chunk files are line based); offsets valid', async () => {
  const log = await DiskShapeLog.create(freshDir(), { chunkBytes: 10_000 });
  log.append([entry(1, 5)]);
  assert.throws(() => log.append([entry(1, 5)]), /1_5 is not after 1_5/);
  assert.throws(() => log.append([{ offset: at(1, -2), json: '{}' }]), /invalid/);
  assert.throws(() => log.append([{ offset: at(1, 1.5), json: '{}' }]), /invalid/);
  assert.throws(() => log.append([{ offset: { tx: -1n, op: 0 }, json: '{}' }]), /invalid/);
  assert.throws(() => log.append([{ offset: at(2, 0), json: '{\n}' }]), /one non-empty line/);
  assert.throws(() => log.append([{ offset: at(2, 0), json: '' }]), /one non-empty line/);
  assert.deepEqual(log.lastOffset, at(1, 5));
  await log.flush();
  assert.deepEqual(await walkEntries(log), [entry(1, 5).json]);
  await log.close();
  assert.throws(() => log.append([entry(5, 0)]), /closed/);
  await assert.rejects(log.flush(), /closed/);
});
test('snapshot entries share their chunk offset; a chunk boundary never falls between equal offsets', async () => {
  const dir = freshDir();
  const row = (op: number, n: number) => ({ offset: at(0, op), json: `{"row":${n}}` });
  const log = await DiskShapeLog.create(dir, { chunkBytes: 40 });
  // Each line is 14 bytes: the third row of a chunk fills it, and append says it sealed.
  const sealed = [0, 1, 2, 3, 4].map((n) => log.append([row(n < 3 ? 0 : 1, n)]));
  assert.deepEqual(sealed, [0, 0, 1, 0, 0]);
  // Chunk 0 is sealed: 0_0 may not continue it in chunk 1, nor may 0_1 go back to it.
  assert.throws(() => log.append([row(0, 9)]), /0_0 is not after 0_1/);
  // Equal offsets that would straddle the boundary this append makes are refused whole.
  assert.throws(() => log.append([row(1, 5), row(1, 6)]), /0_1 is not after 0_1/);
  assert.deepEqual(log.lastOffset, at(0, 1));
  assert.equal(log.append([row(1, 5)], { sealChunk: true }), 1);
  assert.equal(log.append([entry(7, 0)]), 1, 'an entry larger than a chunk fills one alone');
  await log.flush();
  const chunkOf = (op: number, rows: number[]) => rows.map((n) => row(op, n).json);
  assert.deepEqual(
    (await walk(log)).map((r) => [r.entries, r.lastOffset]),
    [
      [chunkOf(0, [0, 1, 2]), at(0, 0)],
      [chunkOf(1, [3, 4, 5]), at(0, 1)],
      [[entry(7, 0).json], at(7, 0)],
    ],
  );
  assert.deepEqual((await log.read(at(0, 0))).entries, chunkOf(1, [3, 4, 5]));
  assert.deepEqual((await log.read(SNAPSHOT_END)).entries, [entry(7, 0).json]);
  await log.close();

  // The files keep the equal offsets, reopen to the same reads, and a cut keeps a whole chunk.
  const reopened = await DiskShapeLog.open(dir, { chunkBytes: 40 });
  assert.deepEqual((await reopened.read('before-all')).entries, chunkOf(0, [0, 1, 2]));
  assert.deepEqual(
    (await chunkFiles(dir)).map((f) => f.offsets),
    // The last, empty file is the open chunk, created with the seal before it.
    [['0_0', '0_0', '0_0'], ['0_1', '0_1', '0_1'], ['7_0'], []],
  );
  await reopened.truncateAfter(at(0, 1));
  assert.deepEqual(await walkEntries(reopened), [
    ...chunkOf(0, [0, 1, 2]),
    ...chunkOf(1, [3, 4, 5]),
  ]);
  await reopened.close();
});

test('a transaction larger than a chunk is split: each chunk is sealed after the entry that fills it', async () => {
  for (const cacheBytes of [0, 600]) {
    const dir = freshDir();
    const log = await DiskShapeLog.create(dir, {
      chunkBytes: 200,
      chunkCache: new ChunkCache(cacheBytes),
    });
    const appended: string[] = [];
    for (let tx = 1; tx <= 80; tx++) {
      const group = txGroup(tx, tx % 10 === 0 ? 12 : (tx * 7) % 5 || 1, 'v'.repeat((tx * 13) % 60));
      log.append(group);
      appended.push(...group.map((e) => e.json));
      if (tx % 3 === 0) await log.flush();
    }
    await log.flush();
    const files = await chunkFiles(dir);
    assert.ok(files.length > 10);
    let split = 0;
    for (const [i, file] of files.entries()) {
      assert.equal(file.sealed, i < files.length - 1, file.name);
      const lastLineBytes = Buffer.byteLength(file.lines.at(-1)!) + 1;
      if (file.sealed) assert.ok(file.entryBytes >= 200, `${file.name} sealed early`);
      assert.ok(file.entryBytes - lastLineBytes < 200, `${file.name} sealed late`);
      const next = files[i + 1];
      if (next && next.offsets[0]!.split('_')[0] === file.offsets.at(-1)!.split('_')[0]) split++;
    }
    assert.ok(split >= 8, `${split} transactions span chunks`);

    const responses = await walk(log);
    assert.deepEqual(
      responses.map((r) => r.entries),
      files.map((f) => f.jsons),
    );
    assert.deepEqual(
      responses.flatMap((r) => r.entries),
      appended,
    );
    assert.deepEqual(
      responses.map((r) => r.reachedEnd),
      files.map((_, i) => i === files.length - 1),
    );
    // From any entry, the response runs to the end of that entry's chunk, or is the next
    // chunk whole when the entry ends its chunk.
    for (const [i, file] of files.entries()) {
      for (const [j, text] of file.offsets.entries()) {
        const result = await log.read(parseOffset(text));
        const expected = j < file.jsons.length - 1 ? file.jsons.slice(j + 1) : files[i + 1]?.jsons;
        assert.deepEqual(result.entries, expected ?? []);
      }
    }
    await log.close();
  }
});

test('destroy removes the directory; a closed log refuses work', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 100 });
  log.append(txGroup(1, 10));
  await log.flush();
  log.append(txGroup(2, 1));
  await log.destroy();
  await assert.rejects(readdir(dir), { code: 'ENOENT' });
  assert.throws(() => log.append(txGroup(3, 1)), /closed/);
  await assert.rejects(log.read('before-all'), /closed/);
  await assert.rejects(log.truncateAfter('before-all'), /closed/);
  await assert.rejects(DiskShapeLog.open(dir, { chunkBytes: 100 }), { code: 'ENOENT' });
});

test('200k small entries: a snapshot and changes, flushed per batch, read back whole', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 64 * 1024 });
  const json = (i: number) => `{"key":"\\"public\\".\\"t\\"/\\"${i}\\"","value":{"id":"${i}"}}`;
  const total = 200_000;
  const snapshotRows = 100_000;
  for (let start = 0; start < total; start += 1000) {
    const batch = Array.from({ length: 1000 }, (_, k) => {
      const i = start + k;
      return i < snapshotRows
        ? { offset: at(0, i), json: json(i) }
        : { offset: at(2n ** 40n + BigInt(i), 0), json: json(i) };
    });
    log.append(batch, { sealChunk: start + 1000 === snapshotRows });
    await log.flush();
  }
  const check = async (subject: DiskShapeLog) => {
    const responses = await walk(subject);
    assert.equal(responses.length, (await chunkFiles(dir)).length);
    let i = 0;
    for (const response of responses) {
      for (const text of response.entries) assert.equal(text, json(i++));
    }
    assert.equal(i, total);
    assert.deepEqual(responses[0]!.entries[0], json(0));
    const snapshotEnd = await subject.read(at(0, snapshotRows - 1));
    assert.equal(snapshotEnd.entries[0], json(snapshotRows));
  };
  await check(log);
  await log.close();
  const reopened = await DiskShapeLog.open(dir, { chunkBytes: 64 * 1024 });
  await check(reopened);
  await reopened.close();
});

test("a log's first chunks are sealed small and grow fourfold up to chunkBytes", async () => {
  const dir = freshDir();
  const chunkBytes = 1024 * 1024;
  const log = await DiskShapeLog.create(dir, { chunkBytes });
  // 2,500 transactions of one ~1 kB entry: 2.5 MB, past the first four limits.
  for (let tx = 1; tx <= 2_500; tx++) log.append(txGroup(tx, 1, 'x'.repeat(1_000)));
  await log.flush();
  const files = await chunkFiles(dir);
  const limits = [64 * 1024, 256 * 1024, chunkBytes, chunkBytes];
  for (const [i, limit] of limits.entries()) {
    const file = files[i]!;
    assert.ok(file.sealed, `${file.name} sealed`);
    const lastLineBytes = Buffer.byteLength(file.lines.at(-1)!) + 1;
    assert.ok(file.entryBytes >= limit, `${file.name}: ${file.entryBytes} bytes, sealed early`);
    assert.ok(file.entryBytes - lastLineBytes < limit, `${file.name}: sealed late`);
  }
  assert.equal(files.length, 5);
  assert.equal(files[4]!.sealed, false);
  // Reopened, it serves the same chunks.
  await log.close();
  const reopened = await DiskShapeLog.open(dir, { chunkBytes });
  assert.deepEqual(
    (await walk(reopened)).map((r) => r.entries.length),
    files.map((f) => f.lines.length),
  );
  await reopened.close();
});
