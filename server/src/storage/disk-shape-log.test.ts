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

test('appended entries become visible only once flushed', async () => {
  const log = await DiskShapeLog.create(freshDir(), { chunkBytes: 10_000 });
  const first = [entry(0, 0), entry(0, 1)];
  log.append(first);
  assert.deepEqual(log.lastOffset, at(0, 1));
  assert.equal(log.durableOffset, undefined);
  assert.deepEqual((await log.read('before-all')).entries, []);
  await log.flush();
  assert.deepEqual(log.durableOffset, at(0, 1));
  assert.deepEqual(await log.read('before-all'), {
    entries: first.map((e) => e.json),
    lastOffset: at(0, 1),
    reachedEnd: true,
  });

  log.append([entry(0, 2)]);
  const stale = await log.read(at(0, 1));
  assert.deepEqual(stale, { entries: [], lastOffset: undefined, reachedEnd: true });
  assert.deepEqual((await log.read('before-all')).entries.length, 2);
  await log.flush();
  assert.deepEqual((await log.read(at(0, 1))).entries, [entry(0, 2).json]);
  await log.close();
});

test('reads are exclusive of the requested offset, also between entries', async () => {
  const log = await DiskShapeLog.create(freshDir(), { chunkBytes: 10_000 });
  log.append([0, 2, 4, 6].map((op) => entry(0, op)));
  await log.flush();
  const jsons = (ops: number[]) => ops.map((op) => entry(0, op).json);
  assert.deepEqual((await log.read(at(0, 2))).entries, jsons([4, 6]));
  assert.deepEqual((await log.read(at(0, 3))).entries, jsons([4, 6]));
  const result = await log.read(at(0, 5));
  assert.deepEqual(result, { entries: jsons([6]), lastOffset: at(0, 6), reachedEnd: true });
  assert.deepEqual((await log.read(at(0, 6))).entries, []);
  assert.deepEqual((await log.read(SNAPSHOT_END)).entries, []);
  assert.deepEqual((await log.read(at(99, 0))).entries, []);
  await log.close();
});

test('many shapes of append and flush calls, including concurrent flushes', async () => {
  const log = await DiskShapeLog.create(freshDir(), { chunkBytes: 300 });
  const expected: string[] = [];
  const add = (tx: number, count: number, options?: { sealChunk?: boolean }) => {
    const group = txGroup(tx, count);
    log.append(group, options);
    expected.push(...group.map((e) => e.json));
  };
  add(1, 3);
  add(2, 1);
  log.append([]);
  await log.flush();
  await log.flush(); // nothing pending
  const flushes: Promise<void>[] = [];
  for (let tx = 3; tx < 60; tx++) {
    add(tx, (tx % 4) + 1, { sealChunk: tx % 11 === 0 });
    flushes.push(log.flush());
    if (tx % 5 === 0) await Promise.resolve();
    if (tx % 9 === 0) await flushes.at(-1);
  }
  const last = log.lastOffset;
  await Promise.all(flushes);
  assert.deepEqual(log.durableOffset, last);
  assert.deepEqual(await walkEntries(log), expected);
  await log.close();
});

test('readers walking the log while it is written see every entry once, in order', async () => {
  const log = await DiskShapeLog.create(freshDir(), { chunkBytes: 500 });
  const total = 3000;
  const writer = (async () => {
    for (let i = 0; i < total; i += 10) {
      log.append(txGroup(i + 1, 10));
      if (i % 30 === 0) await log.flush();
    }
    await log.flush();
  })();
  const seen: string[] = [];
  let cursor: ReturnType<typeof at> | 'before-all' = 'before-all';
  while (seen.length < total) {
    const result = await log.read(cursor);
    seen.push(...result.entries);
    cursor = result.lastOffset ?? cursor;
    if (result.entries.length === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  await writer;
  const expected = Array.from({ length: total / 10 }, (_, i) => txGroup(i * 10 + 1, 10)).flat();
  assert.deepEqual(
    seen,
    expected.map((e) => e.json),
  );
  await log.close();
});

test('offsets must strictly increase; a refused append changes nothing', async () => {
  const log = await DiskShapeLog.create(freshDir(), { chunkBytes: 10_000 });
  log.append([entry(0, 5)]);
  log.append([entry(1, 5)]);
  await log.flush();
  assert.throws(() => log.append([entry(1, 5)]), /1_5 is not after 1_5/);
  assert.throws(() => log.append([entry(1, 4)]), RangeError);
  assert.throws(() => log.append([entry(0, 9)]), /0_9 is not after 1_5/);
  assert.throws(() => log.append([entry(1, 6), entry(1, 7), entry(1, 7)]), /not after/);
  assert.throws(() => log.append([entry(1, 9), entry(1, 8)]), /not after/);
  assert.throws(() => log.append([{ offset: at(1, -2), json: '{}' }]), /invalid/);
  assert.throws(() => log.append([{ offset: at(1, 1.5), json: '{}' }]), /invalid/);
  assert.throws(() => log.append([{ offset: { tx: -1n, op: 0 }, json: '{}' }]), /invalid/);
  assert.throws(() => log.append([{ offset: at(2, 0), json: '{\n}' }]), /one non-empty line/);
  assert.throws(() => log.append([{ offset: at(2, 0), json: '' }]), /one non-empty line/);
  assert.deepEqual(log.lastOffset, at(1, 5));
  log.append([entry(1, 6), { offset: at(2, Infinity), json: '{"end":true}' }]);
  assert.throws(() => log.append([entry(2, 1_000_000)]), /not after 2_inf/);
  await log.flush();
  assert.deepEqual(await walkEntries(log), [
    entry(0, 5).json,
    entry(1, 5).json,
    entry(1, 6).json,
    '{"end":true}',
  ]);
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

test('sealChunk ends a chunk right after the snapshot', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 1_000_000 });
  log.append([entry(0, 0), entry(0, 1), entry(0, 2)], { sealChunk: true });
  log.append([], { sealChunk: true }); // the new chunk is empty: nothing to seal
  log.append(txGroup(100, 2));
  await log.flush();
  const snapshot = await log.read('before-all');
  assert.deepEqual(snapshot.entries.length, 3);
  assert.deepEqual(snapshot.lastOffset, at(0, 2));
  assert.equal(snapshot.reachedEnd, false);
  const changes = txGroup(100, 2).map((e) => e.json);
  assert.deepEqual((await log.read(at(0, 2))).entries, changes);
  assert.deepEqual((await log.read(SNAPSHOT_END)).entries, changes);

  log.append([], { sealChunk: true }); // seals the chunk holding tx 100
  log.append(txGroup(200, 1));
  await log.flush();
  assert.deepEqual((await log.read(at(0, 2))).entries, changes);
  assert.deepEqual((await chunkFiles(dir)).length, 3);
  await log.close();
});

test('reopening after close serves identical reads and continues the open chunk', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 250 });
  for (let tx = 1; tx <= 31; tx++) log.append(txGroup(tx, tx === 31 ? 1 : 3));
  await log.flush();
  const before = await walk(log);
  const { lastOffset, sizeBytes } = log;
  await log.close();
  await log.close();
  await assert.rejects(log.read('before-all'), /closed/);

  const reopened = await DiskShapeLog.open(dir, { chunkBytes: 250 });
  assert.deepEqual(reopened.lastOffset, lastOffset);
  assert.deepEqual(reopened.durableOffset, lastOffset);
  assert.equal(reopened.sizeBytes, sizeBytes);
  const after = await walk(reopened);
  assert.deepEqual(after, before);
  reopened.append(txGroup(32, 1)); // not flushed: close() flushes it
  await reopened.close();

  const again = await DiskShapeLog.open(dir, { chunkBytes: 250 });
  const expected = before.flatMap((r) => r.entries).concat(txGroup(32, 1)[0]!.json);
  assert.deepEqual(await walkEntries(again), expected);
  const filesBefore = (await chunkFiles(dir)).length;
  again.append(txGroup(33, 1));
  await again.flush();
  assert.equal((await chunkFiles(dir)).length, filesBefore, 'the open chunk goes on');
  assert.deepEqual((await again.read(at(32, 0))).entries, [txGroup(33, 1)[0]!.json]);
  await again.close();
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

test('offsets with LSN-sized tx beyond 2^53 round-trip through chunks and the index', async () => {
  const dir = freshDir();
  const log = await DiskShapeLog.create(dir, { chunkBytes: 120 });
  const base = 2n ** 63n;
  log.append([entry(0, 0)], { sealChunk: true });
  for (let i = 0n; i < 6n; i++) log.append(txGroup(base + i * 3n, 2));
  log.append(txGroup(2n ** 64n - 1n, 1));
  await log.flush();
  const before = await walk(log);
  await log.close();
  const reopened = await DiskShapeLog.open(dir, { chunkBytes: 120 });
  assert.deepEqual(await walk(reopened), before);
  assert.deepEqual(reopened.lastOffset, at(2n ** 64n - 1n, 0));
  const afterBase = await reopened.read(at(base, 0));
  assert.equal(afterBase.entries[0], entry(base, 2).json);
  assert.deepEqual((await reopened.read(at(base + 1n, 0))).entries[0], entry(base + 3n, 0).json);
  assert.deepEqual((await walkEntries(reopened)).length, 1 + 12 + 1);
  await reopened.close();
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
