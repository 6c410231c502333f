// The official @electric-sql/client (1.5.x) against a real Sluice and Postgres, over longer runs:
// 10 kB chunks on a large table and a long log, resuming from a stored offset and handle, a 409
// after the shape is deleted, parallel clients and a client joining while writes stream in. Every
// test ends with the oracle (test/support/shape-oracle.ts).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isChangeMessage, type Row } from '@electric-sql/client';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import {
  assertMatchesPostgres,
  recordMessages,
  unrefClientSaveTimers,
  valueText,
  waitForRows,
  withSluice,
} from '../support/shape-oracle.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const ITEMS = 'CREATE TABLE items (id int PRIMARY KEY, title text, n int);';
const items = { table: 'items' };
const CHUNKS = { chunkBytes: 10_240 };

/** A fetch that remembers the URL of every request, to see how a client walked the log. */
function countingFetch(): { fetchClient: typeof fetch; urls: URL[] } {
  const urls: URL[] = [];
  const fetchClient: typeof fetch = (input, init) => {
    urls.push(new URL(input instanceof Request ? input.url : input.toString()));
    return fetch(input, init);
  };
  return { fetchClient, urls };
}

const isCatchUp = (url: URL) =>
  url.searchParams.get('offset') !== '-1' && url.searchParams.get('live') !== 'true';

/** Text that does not compress, so Postgres stores it out of line (TOAST). */
const INCOMPRESSIBLE = `(SELECT string_agg(md5(random()::text || g::text), '') FROM generate_series(1, 700) g)`;

/** Keeps writing small transactions (inserts, updates, deletes) until `stop` is set. */
async function writeUntil(db: TestDatabase, stop: { done: boolean }, firstId: number) {
  let id = firstId;
  while (!stop.done) {
    await db.query(`BEGIN;
      INSERT INTO items VALUES (${id}, 'w ${id}', 0), (${id + 1}, 'w ${id + 1}', 0);
      UPDATE items SET n = n + 1, title = title || '+' WHERE id IN (${id - 7}, ${id % 50});
      DELETE FROM items WHERE id = ${id - 4};
      COMMIT;`);
    id += 2;
  }
  return id;
}

describe('official client: chunked logs', () => {
  test('5,000 rows in 10 kB chunks sync completely, then changes follow', async () => {
    const sql = `${ITEMS} INSERT INTO items
      SELECT i, 'row ' || i || ' ' || repeat('x', i % 97), i FROM generate_series(1, 5000) i;`;
    await withSluice(
      postgres,
      sql,
      async ({ db, open }) => {
        const { fetchClient, urls } = countingFetch();
        const { shape } = open({ params: { table: 'items' }, fetchClient });
        const rows = await shape.rows;
        assert.equal(rows.length, 5000);
        // ~700 kB of messages in small chunks: the client walked several of them. (How big each
        // chunk may be is checked over raw HTTP in shape-http-chunks.test.ts.)
        assert.ok(urls.filter(isCatchUp).length >= 5, `${urls.length} requests`);
        await db.query(`UPDATE items SET n = -n WHERE id % 100 = 0`);
        await db.query(`DELETE FROM items WHERE id BETWEEN 10 AND 19`);
        await db.query(`INSERT INTO items VALUES (5001, 'last', 0)`);
        await waitForRows(shape, (r) => r.some((x) => x.id === 5001));
        await assertMatchesPostgres(db, items, shape);
      },
      CHUNKS,
    );
  });

  test('a long log (thousands of transactions, one bigger than a chunk, TOASTed values) syncs completely', async () => {
    const sql = `CREATE TABLE items (id int PRIMARY KEY, title text, n int, blob text);
      INSERT INTO items SELECT i, 'row ' || i, i, NULL FROM generate_series(1, 200) i;
      UPDATE items SET blob = ${INCOMPRESSIBLE} WHERE id <= 5;`;
    await withSluice(
      postgres,
      sql,
      async ({ db, open }) => {
        const live = open({ params: { table: 'items' } });
        await live.shape.rows;
        // 1,500 committed transactions after the snapshot, then one that touches every row.
        await db.query(`DO $$ BEGIN
          FOR i IN 1..1500 LOOP
            INSERT INTO items VALUES (1000 + i, 'log ' || i, i, NULL);
            UPDATE items SET n = n + 1 WHERE id = 1 + (i % 200); -- the blob stays unchanged TOAST
            IF i % 3 = 0 THEN DELETE FROM items WHERE id = 1000 + i - 1; END IF;
            COMMIT;
          END LOOP;
        END $$`);
        await db.query(`UPDATE items SET title = title || '!'`);
        await db.query(`UPDATE items SET blob = ${INCOMPRESSIBLE} WHERE id = 6`);
        await assertMatchesPostgres(db, items, live.shape);

        // A client starting now reads the snapshot and the whole log as catch-up chunks.
        const { fetchClient, urls } = countingFetch();
        const late = open({ params: { table: 'items' }, fetchClient });
        await late.shape.rows;
        assert.ok(urls.filter(isCatchUp).length >= 20, `${urls.length} requests`);
        await assertMatchesPostgres(db, items, late.shape);
      },
      CHUNKS,
    );
  });
});

describe('official client: resume, refetch and concurrency', () => {
  test('a stream resumed from a stored offset and handle sees only later changes', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 10) i;`;
    await withSluice(postgres, sql, async ({ db, open }) => {
      const first = open({ params: { table: 'items' } });
      await first.shape.rows;
      await db.query(`INSERT INTO items VALUES (11, 'eleven', 11)`);
      await waitForRows(first.shape, (r) => r.length === 11);
      await assertMatchesPostgres(db, items, first.shape);
      // Quiet now: nothing is in flight, so the stored position matches the stored rows.
      const stored = new Map(first.shape.currentValue);
      const offset = first.stream.lastOffset;
      const handle = first.stream.shapeHandle;
      assert.ok(handle);
      first.close();

      await db.query(`INSERT INTO items VALUES (12, 'twelve', 12), (13, 'thirteen', 13)`);
      await db.query(`UPDATE items SET title = 'two' WHERE id = 2`);
      await db.query(`DELETE FROM items WHERE id IN (3, 12)`);

      const resumed = open({ params: { table: 'items' }, offset, handle });
      const messages = recordMessages(resumed);
      // Apply what the resumed stream delivers onto the stored rows (the app's local cache).
      const merged = new Map<string, Row>(stored);
      resumed.stream.subscribe((batch) => {
        for (const m of batch.filter(isChangeMessage)) {
          if (m.headers.operation === 'insert') merged.set(m.key, m.value);
          else if (m.headers.operation === 'update')
            merged.set(m.key, { ...merged.get(m.key), ...m.value });
          else merged.delete(m.key);
        }
      });
      await waitForRows(resumed.shape, (r) => r.length >= 2 && resumed.stream.isUpToDate);
      await assertMatchesPostgres(db, items, () => [...merged.values()]);
      assert.equal(resumed.stream.shapeHandle, handle);
      const seen = messages
        .filter(isChangeMessage)
        .map((m) => `${m.headers.operation} ${valueText(m.value.id)}`);
      assert.deepEqual(seen, ['insert 12', 'insert 13', 'update 2', 'delete 3', 'delete 12']);
    });
  });

  test('after DELETE of the shape the client gets a 409, refetches and ends equal to the table', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 50) i;`;
    await withSluice(
      postgres,
      sql,
      async ({ db, url, open }) => {
        const { shape, stream } = open({ params: { table: 'items' } });
        await shape.rows;
        const firstHandle = stream.shapeHandle;
        assert.ok(firstHandle);
        const deleted = await fetch(`${url}?table=items`, { method: 'DELETE' });
        assert.equal(deleted.status, 202);
        await db.query(`INSERT INTO items VALUES (51, 'after delete', 51)`);
        await db.query(`DELETE FROM items WHERE id = 1`);
        await waitForRows(
          shape,
          (r) => stream.shapeHandle !== firstHandle && r.some((x) => x.id === 51),
        );
        await assertMatchesPostgres(db, items, shape);
        await db.query(`INSERT INTO items VALUES (52, 'on the new handle', 52)`);
        await waitForRows(shape, (r) => r.some((x) => x.id === 52));
        await assertMatchesPostgres(db, items, shape);
      },
      { enableShapeDelete: true },
    );
  });

  test('two clients in parallel both end equal to the table', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 100) i;`;
    await withSluice(postgres, sql, async ({ db, open }) => {
      const a = open({ params: { table: 'items' } });
      const b = open({ params: { table: 'items' } });
      await Promise.all([a.shape.rows, b.shape.rows]);
      assert.equal(a.stream.shapeHandle, b.stream.shapeHandle);
      const stop = { done: false };
      const writing = writeUntil(db, stop, 1000);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      stop.done = true;
      const lastId = await writing;
      await waitForRows(a.shape, (r) => r.some((x) => x.id === lastId - 1));
      await assertMatchesPostgres(db, items, a.shape);
      await assertMatchesPostgres(db, items, b.shape);
    });
  });

  test('a client joining while writes stream in ends equal to the table', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 500) i;`;
    await withSluice(
      postgres,
      sql,
      async ({ db, open }) => {
        const early = open({ params: { table: 'items' } });
        await early.shape.rows;
        const stop = { done: false };
        const writing = writeUntil(db, stop, 1000);
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        const joiner = open({ params: { table: 'items' } });
        const changesOnly = open({ params: { table: 'items' }, log: 'changes_only' });
        // Writes go on until both have joined, and a second more: the changes_only client holds
        // only rows inserted after its shape's snapshot, and on a busy machine making that shape
        // can outlast a fixed pause (the writes then end before it, and it holds none).
        await Promise.all([joiner.shape.rows, changesOnly.shape.rows]);
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        stop.done = true;
        const lastId = await writing;
        for (const client of [early, joiner]) {
          await waitForRows(client.shape, (r) => r.some((x) => x.id === lastId - 1));
          await assertMatchesPostgres(db, items, client.shape);
        }
        // The changes_only client holds exactly the rows inserted after it joined (still there).
        await waitForRows(changesOnly.shape, (r) => r.some((x) => x.id === lastId - 1));
        const known = changesOnly.shape.currentRows.map((r) => Number(r.id));
        assert.ok(known.length > 0);
        await assertMatchesPostgres(
          db,
          { ...items, where: `id >= ${Math.min(...known)}` },
          changesOnly.shape,
        );
      },
      CHUNKS,
    );
  });
});
