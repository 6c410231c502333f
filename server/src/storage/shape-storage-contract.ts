// The behaviour every storage backend owes the server (shape-storage.ts), as node:test tests a
// backend's own test file registers; not used by the server. Nothing here assumes files.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SNAPSHOT_END } from '@sluice/protocol';
import type { LogOffset } from '@sluice/protocol';
import { encodeRows } from './encoded-rows.js';
import type { LogEntry, ShapeLog, ShapeStorage } from './shape-storage.js';
import { at, entry, txGroup, walk, walkEntries } from './shape-log-testing.js';

/**
 * The chunk size `open` must give its storage. Which bytes count towards it is the backend's
 * business: the tests find chunk boundaries from what `append` returns, and only rely on an
 * entry of this suite (about 50 bytes and more) filling a chunk within a few entries.
 */
export const CONTRACT_CHUNK_BYTES = 200;

export interface ContractStorage {
  /** An empty storage with chunks of CONTRACT_CHUNK_BYTES. */
  storage: ShapeStorage;
  /** Another storage over the same data, as after a restart (the suite closed the first one). */
  reopen(): Promise<ShapeStorage>;
  /** Deletes what the storage holds; every storage and log is closed by then. */
  cleanup(): Promise<void>;
}

/**
 * Appends one entry per call, so what `append` returns (0 or 1) says exactly whether the chunk
 * was sealed after it: `chunks` is the log as the backend cut it, the open chunk last.
 */
function appendOne(log: ShapeLog, chunks: LogEntry[][], one: LogEntry): void {
  const before = log.sizeBytes;
  const sealed = log.append([one]);
  assert.ok(log.sizeBytes > before, 'sizeBytes grows with appends');
  chunks.at(-1)!.push(one);
  if (sealed === 1) chunks.push([]);
  else assert.equal(sealed, 0);
}

/**
 * Registers the contract's tests under `describe(name)`. Each test opens a storage of its own
 * with `open` and cleans it up, passed or failed.
 */
export function describeShapeStorageContract(
  name: string,
  open: () => Promise<ContractStorage>,
): void {
  /** Runs `body` on a fresh storage; storages it gets from `reopen` are closed after it too. */
  async function withStorage(
    body: (storage: ShapeStorage, reopen: () => Promise<ShapeStorage>) => Promise<void>,
  ): Promise<void> {
    const subject = await open();
    let current = subject.storage;
    try {
      await body(current, async () => {
        await current.close();
        current = await subject.reopen();
        return current;
      });
    } finally {
      await current.close();
      await subject.cleanup();
    }
  }

  describe(name, () => {
    test('an empty storage lists no shape and has no metadata or record', async () => {
      await withStorage(async (storage) => {
        assert.deepEqual(await storage.listShapes(), []);
        assert.equal(await storage.readMetadata('nothing-1'), undefined);
        assert.equal(await storage.readRecord('continuity'), undefined);
        assert.equal(storage.health().backend, storage.backend);
        assert.equal(storage.health().state, 'up');
        assert.equal(storage.health().breaker, 'closed');
      });
    });

    test('metadata and records round-trip, are replaced whole and survive a reopen', async () => {
      await withStorage(async (storage, reopen) => {
        const first = await storage.createLog('shape-a');
        await storage.writeMetadata('shape-a', '{"snapshotComplete":false}');
        await storage.writeMetadata('shape-a', '{"snapshotComplete":true,"n":"é"}');
        const second = await storage.createLog('shape-b');
        await storage.writeMetadata('shape-b', '{"b":1}');
        await storage.writeRecord('continuity', '{"systemId":"1","timeline":1}');
        await storage.writeRecord('continuity', '{"systemId":"2","timeline":3}');
        await storage.writeRecord('other', '[]');
        assert.deepEqual((await storage.listShapes()).sort(), ['shape-a', 'shape-b']);
        await first.close();
        await second.close();

        const again = await reopen();
        assert.deepEqual((await again.listShapes()).sort(), ['shape-a', 'shape-b']);
        assert.equal(await again.readMetadata('shape-a'), '{"snapshotComplete":true,"n":"é"}');
        assert.equal(await again.readMetadata('shape-b'), '{"b":1}');
        assert.equal(await again.readRecord('continuity'), '{"systemId":"2","timeline":3}');
        assert.equal(await again.readRecord('other'), '[]');
      });
    });

    test('createLog refuses a shape that has a log; removeShape deletes log and metadata', async () => {
      await withStorage(async (storage, reopen) => {
        const log = await storage.createLog('shape-a');
        await storage.writeMetadata('shape-a', '{}');
        await assert.rejects(storage.createLog('shape-a'));
        log.append(txGroup(1, 3));
        await log.close();
        const kept = await storage.createLog('shape-b');
        await storage.writeMetadata('shape-b', '{"kept":true}');
        kept.append(txGroup(1, 2));
        await kept.close();

        await storage.removeShape('shape-a');
        assert.deepEqual(await storage.listShapes(), ['shape-b']);
        assert.equal(await storage.readMetadata('shape-a'), undefined);
        // The handle is free again: a new log there starts empty.
        const anew = await storage.createLog('shape-a');
        assert.deepEqual(await anew.read('before-all'), {
          entries: [],
          lastOffset: undefined,
          reachedEnd: true,
        });
        await anew.close();
        await storage.removeShape('shape-a');

        const again = await reopen();
        assert.deepEqual(await again.listShapes(), ['shape-b']);
        const reopened = await again.openLog('shape-b');
        assert.deepEqual(
          await walkEntries(reopened),
          txGroup(1, 2).map((e) => e.json),
        );
        await reopened.close();
      });
    });

    test('a new log is empty; appended entries become visible only once flushed', async () => {
      await withStorage(async (storage) => {
        const log = await storage.createLog('shape-a');
        assert.equal(log.lastOffset, undefined);
        assert.equal(log.durableOffset, undefined);
        assert.equal(log.sizeBytes, 0);
        assert.equal(typeof log.location, 'string');
        assert.deepEqual(await log.read('before-all'), {
          entries: [],
          lastOffset: undefined,
          reachedEnd: true,
        });
        assert.equal(await log.lastEntry(), undefined);
        assert.equal(log.hasSealedAfter('before-all'), false);
        await log.flush();

        const first = [entry(0, 0), entry(0, 1)];
        assert.equal(log.append(first), 0);
        assert.deepEqual(log.lastOffset, at(0, 1));
        assert.equal(log.durableOffset, undefined);
        assert.deepEqual((await log.read('before-all')).entries, []);
        assert.equal(await log.lastEntry(), undefined);
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
      });
    });

    test('reads are exclusive of the requested offset, also between entries', async () => {
      await withStorage(async (storage) => {
        const log = await storage.createLog('shape-a');
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
      });
    });

    test('offsets must increase; equal snapshot offsets stay in one chunk; a refused append changes nothing', async () => {
      await withStorage(async (storage) => {
        const log = await storage.createLog('shape-a');
        log.append([entry(0, 5)]);
        log.append([entry(1, 5)]);
        await log.flush();
        const size = log.sizeBytes;
        assert.throws(() => log.append([entry(1, 5)]));
        assert.throws(() => log.append([entry(1, 4)]));
        assert.throws(() => log.append([entry(0, 9)]));
        assert.throws(() => log.append([entry(1, 6), entry(1, 7), entry(1, 7)]));
        assert.throws(() => log.append([entry(1, 9), entry(1, 8)]));
        assert.deepEqual(log.lastOffset, at(1, 5));
        assert.equal(log.sizeBytes, size);
        log.append([entry(1, 6), { offset: at(2, Infinity), json: '{"end":true}' }]);
        assert.throws(() => log.append([entry(2, 1_000_000)]));
        await log.flush();
        assert.deepEqual(await walkEntries(log), [
          entry(0, 5).json,
          entry(1, 5).json,
          entry(1, 6).json,
          '{"end":true}',
        ]);
        await log.close();

        // Snapshot rows share their chunk's offset: a boundary never falls between equal ones.
        const snapshot = await storage.createLog('shape-b');
        const row = (n: number) => ({
          offset: at(0, 0),
          json: `{"row":${n},"pad":"${'p'.repeat(40)}"}`,
        });
        // Twenty in one call fill several chunks: a boundary would fall between them.
        assert.throws(() => snapshot.append(Array.from({ length: 20 }, (_, i) => row(i))));
        assert.equal(snapshot.lastOffset, undefined);
        assert.equal(snapshot.sizeBytes, 0);
        let n = 0;
        while (snapshot.append([row(n++)]) === 0) assert.ok(n < 100, 'a chunk is sealed');
        assert.throws(() => snapshot.append([row(n)]), 'no 0_0 after the chunk of 0_0 sealed');
        assert.deepEqual(snapshot.lastOffset, at(0, 0));
        await snapshot.flush();
        assert.equal((await snapshot.read('before-all')).entries.length, n);
        await snapshot.close();
      });
    });

    test('chunks are sealed when full; every read ends at a chunk boundary', async () => {
      await withStorage(async (storage) => {
        const log = await storage.createLog('shape-a');
        const chunks: LogEntry[][] = [[]];
        for (let tx = 1; tx <= 40; tx++) {
          appendOne(log, chunks, entry(tx, 0, 'v'.repeat((tx * 13) % 60)));
          if (tx % 3 === 0) await log.flush();
        }
        await log.flush();
        const full = chunks.filter((chunk) => chunk.length > 0);
        assert.ok(full.length >= 8, `${full.length} chunks`);
        const jsons = (part: LogEntry[]) => part.map((e) => e.json);
        const responses = await walk(log);
        assert.deepEqual(
          responses.map((r) => r.entries),
          full.map(jsons),
        );
        assert.deepEqual(
          responses.map((r) => r.reachedEnd),
          full.map((_, i) => i === full.length - 1),
        );
        // From any entry, the response runs to the end of that entry's chunk, or is the next
        // chunk whole when the entry ends its chunk.
        for (const [i, chunk] of full.entries()) {
          for (const [j, { offset }] of chunk.entries()) {
            const rest = j < chunk.length - 1 ? chunk.slice(j + 1) : (full[i + 1] ?? []);
            assert.deepEqual((await log.read(offset)).entries, jsons(rest));
          }
        }
        await log.close();
      });
    });

    test('appendSnapshotRows cuts and numbers chunks as appending its rows one by one does', async () => {
      await withStorage(async (storage) => {
        const rows = Array.from({ length: 30 }, (_, i) => entry(0, 0, 'é😀'.repeat(i % 4)).json);
        // Each row at the op of its chunk, learned from the append before it.
        const single = await storage.createLog('shape-single');
        let op = 0;
        for (const json of rows) op += single.append([{ offset: at(0, op), json }]);
        const batched = await storage.createLog('shape-batched');
        const sealed = batched.appendSnapshotRows(0, encodeRows(rows.slice(0, 12)));
        assert.equal(batched.appendSnapshotRows(sealed, encodeRows(rows.slice(12))) + sealed, op);
        assert.ok(op >= 3, `${op} chunks sealed`);
        assert.deepEqual(batched.lastOffset, single.lastOffset);
        assert.equal(batched.sizeBytes, single.sizeBytes);
        await single.flush();
        await batched.flush();
        const responses = (log: ShapeLog) =>
          walk(log).then((all) => all.map((r) => [r.lastOffset, r.entries]));
        assert.deepEqual(await responses(batched), await responses(single));

        // Refused whole: a row that is not one line, an op behind the log's.
        const size = batched.sizeBytes;
        assert.throws(
          () => batched.appendSnapshotRows(op, encodeRows([rows[0]!, '{"a":\n1}'])),
          /one non-empty line/,
        );
        assert.throws(
          () => batched.appendSnapshotRows(op, encodeRows([rows[0]!, ''])),
          /one non-empty line/,
        );
        assert.throws(
          () => batched.appendSnapshotRows(op - 1, encodeRows([rows[0]!])),
          /is not after/,
        );
        assert.equal(batched.sizeBytes, size);
        assert.deepEqual(batched.lastOffset, single.lastOffset);
        await single.close();
        await batched.close();
      });
    });

    test('a transaction larger than a chunk spans chunks, each sealed after the entry that fills it', async () => {
      await withStorage(async (storage) => {
        const log = await storage.createLog('shape-a');
        log.append([entry(0, 0)], { sealChunk: true });
        const big = txGroup(7, 20);
        const sealed = log.append(big);
        assert.ok(sealed >= 2, `it sealed ${sealed} chunks`);
        log.append(txGroup(8, 1));
        await log.flush();
        const responses = (await walk(log)).slice(1);
        assert.ok(responses.length >= sealed, 'one response per chunk');
        assert.deepEqual(
          responses.flatMap((r) => r.entries),
          [...big, ...txGroup(8, 1)].map((e) => e.json),
        );
        // Every sealed part of it is a few entries, not the whole transaction.
        for (const response of responses) assert.ok(response.entries.length < big.length);
        assert.equal(log.hasSealedAfter(at(0, 0)), true);
        await log.close();
      });
    });

    test('sealChunk ends the chunk holding the last entry; hasSealedAfter tells durable sealed chunks', async () => {
      await withStorage(async (storage) => {
        const log = await storage.createLog('shape-a');
        const snapshot = [entry(0, 0), entry(0, 1)];
        assert.equal(log.append(snapshot, { sealChunk: true }), 1);
        assert.equal(log.append([], { sealChunk: true }), 0, 'an empty chunk is not sealed');
        assert.equal(log.hasSealedAfter('before-all'), false, 'not durable yet');
        log.append(txGroup(100, 2));
        await log.flush();
        assert.equal(log.hasSealedAfter('before-all'), true);
        assert.equal(log.hasSealedAfter(at(0, 0)), true);
        assert.equal(log.hasSealedAfter(at(0, 1)), false);
        assert.equal(log.hasSealedAfter(SNAPSHOT_END), false);

        const first = await log.read('before-all');
        assert.deepEqual(first, {
          entries: snapshot.map((e) => e.json),
          lastOffset: at(0, 1),
          reachedEnd: false,
        });
        const changes = txGroup(100, 2).map((e) => e.json);
        assert.deepEqual((await log.read(at(0, 1))).entries, changes);
        assert.deepEqual((await log.read(SNAPSHOT_END)).entries, changes);

        assert.equal(log.append([], { sealChunk: true }), 1, 'seals the chunk of tx 100');
        log.append(txGroup(200, 1));
        await log.flush();
        assert.equal(log.hasSealedAfter(SNAPSHOT_END), true);
        assert.equal(log.hasSealedAfter(at(100, 2)), false);
        assert.deepEqual(await log.read(at(0, 1)), {
          entries: changes,
          lastOffset: at(100, 2),
          reachedEnd: false,
        });
        assert.deepEqual(await log.lastEntry(), entry(200, 0));
        await log.close();
      });
    });

    test('many appends and flushes, some concurrent, end durable and in order', async () => {
      await withStorage(async (storage) => {
        const log = await storage.createLog('shape-a');
        const expected: string[] = [];
        const flushes: Promise<void>[] = [];
        for (let tx = 1; tx < 60; tx++) {
          const group = txGroup(tx, (tx % 4) + 1);
          log.append(group, { sealChunk: tx % 11 === 0 });
          expected.push(...group.map((e) => e.json));
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
    });

    test('readers walking the log while it is written see every entry once, in order', async () => {
      await withStorage(async (storage) => {
        const log = await storage.createLog('shape-a');
        const total = 600;
        const writer = (async () => {
          for (let i = 0; i < total; i += 10) {
            log.append(txGroup(i + 1, 10));
            if (i % 30 === 0) await log.flush();
          }
          await log.flush();
        })();
        const seen: string[] = [];
        let cursor: LogOffset | 'before-all' = 'before-all';
        while (seen.length < total) {
          const result = await log.read(cursor);
          seen.push(...result.entries);
          cursor = result.lastOffset ?? cursor;
          if (result.entries.length === 0) await new Promise((resolve) => setImmediate(resolve));
        }
        await writer;
        const expected = Array.from({ length: total / 10 }, (_, i) => txGroup(i * 10 + 1, 10));
        assert.deepEqual(
          seen,
          expected.flat().map((e) => e.json),
        );
        await log.close();
      });
    });

    test('truncateAfter cuts into the open chunk and into sealed chunks; appends go on after', async () => {
      await withStorage(async (storage, reopen) => {
        const log = await storage.createLog('shape-a');
        const chunks: LogEntry[][] = [[]];
        // Three sealed chunks or more, and two entries or more in the open one.
        let tx = 0;
        let sizeWithOneOpen = 0; // what the cut into the open chunk must bring sizeBytes back to
        while (chunks.length < 4 || chunks.at(-1)!.length < 2) {
          appendOne(log, chunks, entry(++tx, 0));
          if (chunks.length === 4 && chunks[3]!.length === 1) sizeWithOneOpen = log.sizeBytes;
        }
        await log.flush();
        const jsons = (part: LogEntry[]) => part.map((e) => e.json);
        const open = chunks.at(-1)!;

        // Into the open chunk: its entries after the first go, with one not flushed yet.
        log.append([entry(++tx, 0)]);
        await log.truncateAfter(open[0]!.offset);
        assert.deepEqual(log.lastOffset, open[0]!.offset);
        assert.deepEqual(log.durableOffset, open[0]!.offset);
        assert.equal(log.sizeBytes, sizeWithOneOpen);
        assert.deepEqual(await log.lastEntry(), open[0]);
        const sealedPart = chunks.slice(0, -1).flat();
        assert.deepEqual(await walkEntries(log), jsons([...sealedPart, open[0]!]));

        // Into the second sealed chunk, after its first entry: the rest of the log goes, and
        // what is left of that chunk stays one response.
        const second = chunks[1]!;
        const sizeBefore = log.sizeBytes;
        await log.truncateAfter(second[0]!.offset);
        assert.deepEqual(log.lastOffset, second[0]!.offset);
        assert.ok(log.sizeBytes < sizeBefore);
        assert.deepEqual(await walkEntries(log), jsons([...chunks[0]!, second[0]!]));
        assert.deepEqual(await log.lastEntry(), second[0]);
        assert.equal(log.hasSealedAfter(second[0]!.offset), false);
        const later = txGroup(++tx, 2);
        log.append(later);
        await log.flush();
        assert.deepEqual(await walkEntries(log), jsons([...chunks[0]!, second[0]!, ...later]));
        assert.deepEqual((await log.read(second[0]!.offset)).entries, jsons(later));
        assert.deepEqual((await log.read('before-all')).entries, jsons(chunks[0]!));
        const before = await walk(log);
        await log.close();

        const again = await reopen();
        const reopened = await again.openLog('shape-a');
        assert.deepEqual(await walk(reopened), before);
        await reopened.truncateAfter('before-all');
        assert.equal(reopened.lastOffset, undefined);
        assert.equal(await reopened.lastEntry(), undefined);
        assert.deepEqual(await walkEntries(reopened), []);
        reopened.append([entry(++tx, 0)]);
        await reopened.close();
        const emptied = await again.openLog('shape-a');
        assert.deepEqual(await walkEntries(emptied), [entry(tx, 0).json]);
        await emptied.close();
      });
    });

    test('a closed log refuses work; destroy deletes the log', async () => {
      await withStorage(async (storage) => {
        const log = await storage.createLog('shape-a');
        log.append(txGroup(1, 3));
        await log.close();
        assert.throws(() => log.append(txGroup(2, 1)));
        await assert.rejects(log.flush());
        await assert.rejects(log.read('before-all'));
        await assert.rejects(log.lastEntry());
        await assert.rejects(log.truncateAfter('before-all'));

        const doomed = await storage.createLog('shape-b');
        doomed.append(txGroup(1, 10));
        await doomed.flush();
        doomed.append(txGroup(2, 1));
        await doomed.destroy();
        assert.throws(() => doomed.append(txGroup(3, 1)));
        await assert.rejects(doomed.read('before-all'));
        await storage.removeShape('shape-b');
        const anew = await storage.createLog('shape-b');
        assert.deepEqual(await walkEntries(anew), []);
        assert.equal(anew.lastOffset, undefined);
        await anew.close();
      });
    });

    test('reopening after close serves identical reads and continues the open chunk', async () => {
      await withStorage(async (storage, reopen) => {
        const log = await storage.createLog('shape-a');
        await storage.writeMetadata('shape-a', '{}');
        // LSN-sized transaction ids, beyond 2^53, up to the largest.
        const base = 2n ** 63n;
        const top = 2n ** 64n - 1n;
        log.append([entry(0, 0)], { sealChunk: true });
        for (let i = 1n; i <= 30n; i++) log.append(txGroup(base + i * 3n, 2));
        log.append(txGroup(top - 2n, 1));
        await log.flush();
        const before = await walk(log);
        const { lastOffset, sizeBytes } = log;
        log.append(txGroup(top - 1n, 1)); // not flushed: close() flushes it
        await log.close();

        let again = await reopen();
        assert.deepEqual(await again.listShapes(), ['shape-a']);
        const reopened = await again.openLog('shape-a');
        assert.deepEqual(reopened.lastOffset, at(top - 1n, 0));
        assert.deepEqual(reopened.durableOffset, at(top - 1n, 0));
        assert.ok(reopened.sizeBytes > sizeBytes);
        assert.deepEqual(await reopened.lastEntry(), entry(top - 1n, 0));
        const reread = await walk(reopened);
        assert.deepEqual(
          reread.flatMap((r) => r.entries),
          [...before.flatMap((r) => r.entries), entry(top - 1n, 0).json],
        );
        // Every chunk sealed before closing reads the same.
        const sealedBefore = before.slice(0, -1);
        assert.deepEqual(reread.slice(0, sealedBefore.length), sealedBefore);
        assert.deepEqual((await reopened.read(lastOffset!)).entries, [entry(top - 1n, 0).json]);
        assert.equal((await reopened.read(at(base, 0))).entries[0], entry(base + 3n, 0).json);

        // The open chunk goes on: the next entry joins the last response, unless that chunk
        // was sealed.
        const lastSealed = reopened.hasSealedAfter(reread.at(-2)?.lastOffset ?? 'before-all');
        reopened.append(txGroup(top, 1));
        await reopened.flush();
        const next = await walk(reopened);
        assert.equal(next.length, reread.length + (lastSealed ? 1 : 0));
        assert.deepEqual(next.at(-1)!.entries.at(-1), entry(top, 0).json);
        await reopened.close();

        again = await reopen();
        const third = await again.openLog('shape-a');
        assert.deepEqual(await walk(third), next);
        await third.close();
      });
    });
  });
}
