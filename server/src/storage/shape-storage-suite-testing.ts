// The behaviour every ShapeStorage backend must have, as the disk log's tests pin it down
// (shape-log.test.ts, shape-log-recovery.test.ts), written against the interface only so that
// any backend can run it. Not used by the server.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SNAPSHOT_END, formatLogOffset } from '@sluice/protocol';
import type { LogOffset } from '@sluice/protocol';
import { ChunkCache } from './chunk-cache.js';
import { at, entry, txGroup } from './shape-log-testing.js';
import type { LogEntry, ReadResult, ShapeLog, ShapeStorage } from './shape-storage.js';

export interface OpenedStorage {
  storage: ShapeStorage;
  /** Closes `storage` (if still open) and opens the same stored data again. */
  reopen: () => Promise<ShapeStorage>;
  cleanup: () => Promise<void>;
}

/** A fresh, empty storage whose logs seal chunks at `chunkBytes`. */
export type OpenStorage = (options: {
  chunkBytes: number;
  chunkCache?: ChunkCache;
}) => Promise<OpenedStorage>;

/** Reads the whole durable log as a client does, feeding back each response's last offset. */
export async function walk(log: ShapeLog): Promise<ReadResult[]> {
  const responses: ReadResult[] = [];
  let cursor: LogOffset | 'before-all' = 'before-all';
  for (;;) {
    const result = await log.read(cursor);
    if (result.entries.length === 0) {
      assert.equal(result.reachedEnd, true);
      assert.equal(result.lastOffset, undefined);
      return responses;
    }
    responses.push(result);
    cursor = result.lastOffset!;
  }
}

export async function walkEntries(log: ShapeLog): Promise<string[]> {
  return (await walk(log)).flatMap((result) => result.entries);
}

/** Bytes an entry counts for against `chunkBytes` (its line in a disk chunk file). */
function lineBytes({ offset, json }: LogEntry): number {
  return Buffer.byteLength(`${formatLogOffset(offset)} ${json}\n`);
}

let handles = 0;
const freshHandle = () => `h${++handles}-${Date.now()}`;

/** Runs the storage behaviour tests against the backend that `open` makes. */
export function describeShapeStorageSuite(name: string, open: OpenStorage): void {
  /** Runs `body` on a fresh storage, cleaning up whatever happens. */
  const withStorage = async (
    options: { chunkBytes: number; chunkCache?: ChunkCache },
    body: (opened: OpenedStorage) => Promise<void>,
  ) => {
    const opened = await open(options);
    try {
      await body(opened);
    } finally {
      await opened.cleanup();
    }
  };

  describe(`${name}: shape storage`, () => {
    test('a new log starts empty; creating it twice is refused', () =>
      withStorage({ chunkBytes: 100 }, async ({ storage }) => {
        const handle = freshHandle();
        const log = await storage.createLog(handle);
        assert.equal(log.lastOffset, undefined);
        assert.equal(log.durableOffset, undefined);
        assert.equal(log.sizeBytes, 0);
        assert.deepEqual(await log.read('before-all'), {
          entries: [],
          lastOffset: undefined,
          reachedEnd: true,
        });
        assert.equal(await log.lastEntry(), undefined);
        await log.flush();
        await assert.rejects(storage.createLog(handle));
        await log.close();
      }));

    test('appended entries become visible only once flushed', () =>
      withStorage({ chunkBytes: 10_000 }, async ({ storage }) => {
        const log = await storage.createLog(freshHandle());
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
        assert.deepEqual(await log.read(at(0, 1)), {
          entries: [],
          lastOffset: undefined,
          reachedEnd: true,
        });
        assert.deepEqual(await log.lastEntry(), entry(0, 1));
        await log.flush();
        assert.deepEqual((await log.read(at(0, 1))).entries, [entry(0, 2).json]);
        assert.deepEqual(await log.lastEntry(), entry(0, 2));
        await log.close();
      }));

    test('reads are exclusive of the requested offset, also between entries', () =>
      withStorage({ chunkBytes: 10_000 }, async ({ storage }) => {
        const log = await storage.createLog(freshHandle());
        log.append([0, 2, 4, 6].map((op) => entry(0, op)));
        await log.flush();
        const jsons = (ops: number[]) => ops.map((op) => entry(0, op).json);
        assert.deepEqual((await log.read(at(0, 2))).entries, jsons([4, 6]));
        assert.deepEqual((await log.read(at(0, 3))).entries, jsons([4, 6]));
        assert.deepEqual(await log.read(at(0, 5)), {
          entries: jsons([6]),
          lastOffset: at(0, 6),
          reachedEnd: true,
        });
        assert.deepEqual((await log.read(at(0, 6))).entries, []);
        assert.deepEqual((await log.read(SNAPSHOT_END)).entries, []);
        assert.deepEqual((await log.read(at(99, 0))).entries, []);
        await log.close();
      }));

    test('appends and concurrent flushes in many patterns; readers see every entry once, in order', () =>
      withStorage({ chunkBytes: 300 }, async ({ storage }) => {
        const log = await storage.createLog(freshHandle());
        const expected: string[] = [];
        const flushes: Promise<void>[] = [];
        const seen: string[] = [];
        let cursor: LogOffset | 'before-all' = 'before-all';
        const reader = (async () => {
          while (seen.length < 200) {
            const result = await log.read(cursor);
            seen.push(...result.entries);
            cursor = result.lastOffset ?? cursor;
            if (result.entries.length === 0) await new Promise((r) => setTimeout(r, 1));
          }
        })();
        for (let tx = 1; expected.length < 200; tx++) {
          const group = txGroup(tx, (tx % 4) + 1);
          log.append(group, { sealChunk: tx % 11 === 0 });
          expected.push(...group.map((e) => e.json));
          flushes.push(log.flush());
          if (tx % 5 === 0) await Promise.resolve();
          if (tx % 9 === 0) await flushes.at(-1);
        }
        log.append([]);
        await Promise.all(flushes);
        await log.flush();
        assert.deepEqual(log.durableOffset, log.lastOffset);
        await reader;
        assert.deepEqual(seen, expected.slice(0, seen.length));
        assert.deepEqual(await walkEntries(log), expected);
        await log.close();
      }));

    test('offsets must increase; a refused append changes nothing; a closed log refuses work', () =>
      withStorage({ chunkBytes: 10_000 }, async ({ storage }) => {
        const log = await storage.createLog(freshHandle());
        log.append([entry(0, 5)]);
        log.append([entry(1, 5)]);
        await log.flush();
        assert.throws(() => log.append([entry(1, 5)]), /1_5 is not after 1_5/);
        assert.throws(() => log.append([entry(0, 9)]), /0_9 is not after 1_5/);
        assert.throws(() => log.append([entry(1, 6), entry(1, 7), entry(1, 7)]), /not after/);
        assert.throws(() => log.append([{ offset: at(1, 1.5), json: '{}' }]), /invalid/);
        assert.throws(() => log.append([{ offset: { tx: -1n, op: 0 }, json: '{}' }]), /invalid/);
        assert.throws(() => log.append([{ offset: at(2, 0), json: '{\n}' }]), /one non-empty/);
        assert.throws(() => log.append([{ offset: at(2, 0), json: '' }]), /one non-empty/);
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
        await log.close();
        assert.throws(() => log.append([entry(5, 0)]), /closed/);
        await assert.rejects(log.flush(), /closed/);
        await assert.rejects(log.read('before-all'), /closed/);
        await assert.rejects(log.truncateAfter('before-all'), /closed/);
      }));

    test('snapshot entries share their chunk offset; a chunk boundary never falls between equal offsets', () =>
      withStorage({ chunkBytes: 40 }, async ({ storage, reopen }) => {
        const handle = freshHandle();
        const row = (op: number, n: number) => ({ offset: at(0, op), json: `{"row":${n}}` });
        const log = await storage.createLog(handle);
        // Each entry counts 14 bytes: the third of a chunk fills it, and append says it sealed.
        const sealed = [0, 1, 2, 3, 4].map((n) => log.append([row(n < 3 ? 0 : 1, n)]));
        assert.deepEqual(sealed, [0, 0, 1, 0, 0]);
        assert.throws(() => log.append([row(0, 9)]), /0_0 is not after 0_1/);
        assert.throws(() => log.append([row(1, 5), row(1, 6)]), /0_1 is not after 0_1/);
        assert.equal(log.append([row(1, 5)], { sealChunk: true }), 1);
        assert.equal(log.append([entry(7, 0)]), 1, 'an entry larger than a chunk fills one alone');
        assert.equal(log.hasSealedAfter('before-all'), false, 'sealed, but not durable yet');
        await log.flush();
        assert.equal(log.hasSealedAfter(at(0, 1)), true);
        assert.equal(log.hasSealedAfter(at(7, 0)), false);
        const chunkOf = (op: number, rows: number[]) => rows.map((n) => row(op, n).json);
        const expected = [
          [chunkOf(0, [0, 1, 2]), at(0, 0)],
          [chunkOf(1, [3, 4, 5]), at(0, 1)],
          [[entry(7, 0).json], at(7, 0)],
        ];
        assert.deepEqual(
          (await walk(log)).map((r) => [r.entries, r.lastOffset]),
          expected,
        );
        assert.deepEqual((await log.read(at(0, 0))).entries, chunkOf(1, [3, 4, 5]));
        assert.deepEqual((await log.read(SNAPSHOT_END)).entries, [entry(7, 0).json]);
        await log.close();

        const reopened = await (await reopen()).openLog(handle);
        assert.deepEqual(
          (await walk(reopened)).map((r) => [r.entries, r.lastOffset]),
          expected,
        );
        await reopened.truncateAfter(at(0, 1));
        assert.deepEqual(await walkEntries(reopened), [
          ...chunkOf(0, [0, 1, 2]),
          ...chunkOf(1, [3, 4, 5]),
        ]);
        await reopened.close();
      }));

    test('a transaction larger than a chunk is split: each chunk is sealed after the entry that fills it', async () => {
      for (const cacheBytes of [0, 600]) {
        await withStorage(
          { chunkBytes: 200, chunkCache: new ChunkCache(cacheBytes) },
          async ({ storage, reopen }) => {
            const handle = freshHandle();
            const log = await storage.createLog(handle);
            const appended: LogEntry[] = [];
            for (let tx = 1; tx <= 80; tx++) {
              const count = tx % 10 === 0 ? 12 : (tx * 7) % 5 || 1;
              const group = txGroup(tx, count, 'v'.repeat((tx * 13) % 60));
              log.append(group);
              appended.push(...group);
              if (tx % 3 === 0) await log.flush();
            }
            await log.flush();
            const check = async (subject: ShapeLog) => {
              const responses = await walk(subject);
              assert.ok(responses.length > 10);
              let i = 0;
              let split = 0;
              for (const [n, response] of responses.entries()) {
                const chunk = appended.slice(i, i + response.entries.length);
                i += chunk.length;
                assert.deepEqual(
                  response.entries,
                  chunk.map((e) => e.json),
                );
                const bytes = chunk.reduce((sum, e) => sum + lineBytes(e), 0);
                const isLast = n === responses.length - 1;
                if (!isLast) assert.ok(bytes >= 200, `chunk ${n} sealed early`);
                assert.ok(bytes - lineBytes(chunk.at(-1)!) < 200, `chunk ${n} sealed late`);
                assert.equal(response.reachedEnd, isLast);
                if (appended[i]?.offset.tx === chunk.at(-1)!.offset.tx) split++;
                // From any entry, the answer runs to the end of its chunk, or is the next chunk.
                for (const [j, e] of chunk.entries()) {
                  const next =
                    j < chunk.length - 1
                      ? response.entries.slice(j + 1)
                      : (responses[n + 1]?.entries ?? []);
                  assert.deepEqual((await subject.read(e.offset)).entries, next);
                }
              }
              assert.equal(i, appended.length);
              assert.ok(split >= 8, `${split} transactions span chunks`);
            };
            await check(log);
            const { sizeBytes, lastOffset } = log;
            await log.close();
            const reopened = await (await reopen()).openLog(handle);
            assert.equal(reopened.sizeBytes, sizeBytes);
            assert.deepEqual(reopened.lastOffset, lastOffset);
            assert.deepEqual(reopened.durableOffset, lastOffset);
            await check(reopened);
            await reopened.close();
          },
        );
      }
    });

    test('sealChunk ends a chunk right after the snapshot', () =>
      withStorage({ chunkBytes: 1_000_000 }, async ({ storage }) => {
        const log = await storage.createLog(freshHandle());
        log.append([entry(0, 0), entry(0, 1), entry(0, 2)], { sealChunk: true });
        assert.equal(log.append([], { sealChunk: true }), 0, 'the new chunk is empty');
        log.append(txGroup(100, 2));
        await log.flush();
        const snapshot = await log.read('before-all');
        assert.equal(snapshot.entries.length, 3);
        assert.deepEqual(snapshot.lastOffset, at(0, 2));
        assert.equal(snapshot.reachedEnd, false);
        const changes = txGroup(100, 2).map((e) => e.json);
        assert.deepEqual((await log.read(at(0, 2))).entries, changes);
        assert.deepEqual((await log.read(SNAPSHOT_END)).entries, changes);
        assert.equal(log.append([], { sealChunk: true }), 1);
        log.append(txGroup(200, 1));
        await log.flush();
        assert.deepEqual((await log.read(at(0, 2))).entries, changes);
        assert.equal((await walk(log)).length, 3);
        await log.close();
      }));

    test('reopening after close serves identical reads and continues the open chunk', () =>
      withStorage({ chunkBytes: 250 }, async ({ storage, reopen }) => {
        const handle = freshHandle();
        const log = await storage.createLog(handle);
        for (let tx = 1; tx <= 31; tx++) log.append(txGroup(tx, tx === 31 ? 1 : 3));
        await log.flush();
        const before = await walk(log);
        const { sizeBytes } = log;
        log.append(txGroup(32, 1)); // not flushed: close() flushes it
        await log.close();

        let reopened = await (await reopen()).openLog(handle);
        const expected = before.flatMap((r) => r.entries).concat(txGroup(32, 1)[0]!.json);
        assert.deepEqual(await walkEntries(reopened), expected);
        assert.ok(reopened.sizeBytes > sizeBytes);
        assert.deepEqual(reopened.durableOffset, at(32, 0));
        const responses = (await walk(reopened)).length;
        reopened.append(txGroup(33, 1));
        await reopened.flush();
        assert.equal((await walk(reopened)).length, responses, 'the open chunk goes on');
        assert.deepEqual((await reopened.read(at(32, 0))).entries, [txGroup(33, 1)[0]!.json]);
        await reopened.close();
        reopened = await (await reopen()).openLog(handle);
        assert.deepEqual(await walkEntries(reopened), [...expected, txGroup(33, 1)[0]!.json]);
        assert.deepEqual(reopened.lastOffset, at(33, 0));
        await reopened.close();
      }));

    test('truncateAfter cuts inside the open chunk and inside sealed chunks; appends go on', () =>
      withStorage({ chunkBytes: 200 }, async ({ storage, reopen }) => {
        const handle = freshHandle();
        let log = await storage.createLog(handle);
        const appended: LogEntry[] = [];
        for (let tx = 1; tx <= 20; tx++) {
          appended.push(...txGroup(tx, 3));
          log.append(txGroup(tx, 3));
        }
        const jsonsUpTo = (tx: number) =>
          appended.filter((e) => e.offset.tx <= BigInt(tx)).map((e) => e.json);
        // Not flushed: the cut flushes first, then drops the rest.
        await log.truncateAfter(at(19, Infinity));
        assert.deepEqual(await walkEntries(log), jsonsUpTo(19));
        assert.deepEqual(log.lastOffset, at(19, 4));
        assert.deepEqual(log.durableOffset, at(19, 4));
        assert.ok(log.hasSealedAfter(at(2, 0)));
        // Into a sealed chunk, mid-chunk: it stays sealed, later appends start a new chunk.
        await log.truncateAfter(at(4, 2));
        assert.deepEqual(await walkEntries(log), jsonsUpTo(4).slice(0, -1));
        assert.deepEqual(log.lastOffset, at(4, 2));
        assert.deepEqual(await log.lastEntry(), entry(4, 2));
        const responses = await walk(log);
        log.append(txGroup(50, 1));
        await log.flush();
        assert.equal((await walk(log)).length, responses.length + 1);
        assert.deepEqual((await log.read(at(4, 2))).entries, [entry(50, 0).json]);
        await log.close();

        log = await (await reopen()).openLog(handle);
        assert.deepEqual(await walkEntries(log), [...jsonsUpTo(4).slice(0, -1), entry(50, 0).json]);
        await log.truncateAfter(at(1, Infinity));
        assert.deepEqual(await walkEntries(log), jsonsUpTo(1));
        await log.truncateAfter('before-all');
        assert.deepEqual(await walkEntries(log), []);
        assert.equal(log.lastOffset, undefined);
        assert.equal(log.sizeBytes, 0);
        assert.equal(await log.lastEntry(), undefined);
        log.append(txGroup(60, 2));
        await log.close();
        log = await (await reopen()).openLog(handle);
        assert.deepEqual(
          await walkEntries(log),
          txGroup(60, 2).map((e) => e.json),
        );
        await log.close();
      }));

    test('destroy deletes the log; removeShape deletes log and metadata', () =>
      withStorage({ chunkBytes: 100 }, async ({ storage }) => {
        const [kept, destroyed, removed] = [freshHandle(), freshHandle(), freshHandle()];
        for (const handle of [kept, destroyed, removed]) {
          await storage.writeMetadata(handle, JSON.stringify({ handle }));
          const log = await storage.createLog(handle);
          log.append(txGroup(1, 10));
          await log.flush();
          if (handle === destroyed) {
            log.append(txGroup(2, 1));
            await log.destroy();
            assert.throws(() => log.append(txGroup(3, 1)), /closed/);
            await assert.rejects(log.read('before-all'), /closed/);
          } else {
            await log.close();
          }
        }
        await assert.rejects(storage.openLog(destroyed));
        await storage.removeShape(removed);
        assert.equal(await storage.readMetadata(removed), undefined);
        await assert.rejects(storage.openLog(removed));
        assert.deepEqual((await storage.listShapes()).sort(), [destroyed, kept].sort());
        const log = await storage.openLog(kept);
        assert.equal((await walkEntries(log)).length, 10);
        await log.close();
        // The handle can be used again from scratch.
        const again = await storage.createLog(removed);
        assert.equal(again.lastOffset, undefined);
        await again.close();
      }));

    test('metadata and records are stored durably and replaced whole', () =>
      withStorage({ chunkBytes: 100 }, async ({ storage, reopen }) => {
        const handle = freshHandle();
        assert.equal(await storage.readMetadata(handle), undefined);
        assert.equal(await storage.readRecord('continuity'), undefined);
        await storage.writeMetadata(handle, '{"v":1}');
        await storage.writeMetadata(handle, '{"v":2}');
        await storage.writeRecord('continuity', '{"lsn":"0/1"}');
        assert.deepEqual(await storage.listShapes(), [handle]);
        const again = await reopen();
        assert.equal(await again.readMetadata(handle), '{"v":2}');
        assert.equal(await again.readRecord('continuity'), '{"lsn":"0/1"}');
        assert.equal(await again.readRecord('other'), undefined);
        assert.equal(again.health().state, 'up');
        assert.equal(again.health().breaker, 'closed');
      }));

    test('offsets with LSN-sized tx beyond 2^53 round-trip', () =>
      withStorage({ chunkBytes: 120 }, async ({ storage, reopen }) => {
        const handle = freshHandle();
        const log = await storage.createLog(handle);
        const base = 2n ** 63n;
        log.append([entry(0, 0)], { sealChunk: true });
        for (let i = 0n; i < 6n; i++) log.append(txGroup(base + i * 3n, 2));
        log.append(txGroup(2n ** 64n - 1n, 1));
        await log.flush();
        const before = await walk(log);
        await log.close();
        const reopened = await (await reopen()).openLog(handle);
        assert.deepEqual(await walk(reopened), before);
        assert.deepEqual(reopened.lastOffset, at(2n ** 64n - 1n, 0));
        assert.equal((await reopened.read(at(base, 0))).entries[0], entry(base, 2).json);
        assert.equal((await walkEntries(reopened)).length, 1 + 12 + 1);
        await reopened.close();
      }));

    test('100k small entries: a snapshot and changes, flushed per batch, read back whole', () =>
      withStorage({ chunkBytes: 64 * 1024 }, async ({ storage, reopen }) => {
        const handle = freshHandle();
        const log = await storage.createLog(handle);
        const json = (i: number) =>
          `{"key":"\\"public\\".\\"t\\"/\\"${i}\\"","value":{"id":"${i}"}}`;
        const [total, snapshotRows] = [100_000, 50_000];
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
        const check = async (subject: ShapeLog) => {
          let i = 0;
          for (const text of await walkEntries(subject)) assert.equal(text, json(i++));
          assert.equal(i, total);
          const snapshotEnd = await subject.read(at(0, snapshotRows - 1));
          assert.equal(snapshotEnd.entries[0], json(snapshotRows));
        };
        await check(log);
        await log.close();
        const reopened = await (await reopen()).openLog(handle);
        await check(reopened);
        await reopened.close();
      }));
  });
}
