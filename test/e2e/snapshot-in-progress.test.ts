// A snapshot is served while it is being written: each chunk as soon as it is sealed and durable
// (docs/architecture.md, "Snapshots"). The answers must be exactly those a reader gets once the
// snapshot is complete: same bodies, offsets, chunk boundaries and headers. A snapshot that fails
// midway, or replication going down while it is served, leaves no client wrong or waiting.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  startPostgres,
  terminateWalsender,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import { withoutErrorLogs } from '../support/error-logs.js';
import { waitForStatus } from '../support/server-status.js';
import { lockTable } from '../support/table-lock.js';
import {
  assertMatchesPostgres,
  unrefClientSaveTimers,
  withSluice,
} from '../support/shape-oracle.js';
import { get, parseBody, snapshotToEnd, type Reply } from './shape-http-helpers.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

// ~2 MB of messages in 10 kB chunks: hundreds of chunks, each synced before it is served, so the
// snapshot is still being written long after its first chunk is sealed.
const ROWS = 20_000;
const SQL = `CREATE TABLE items (id int PRIMARY KEY, title text, n int);
  INSERT INTO items SELECT i, 'row ' || i || ' ' || repeat('x', i % 41), i FROM generate_series(1, ${ROWS}) i;`;
const CHUNKS = { chunkBytes: 10_240 };

/** What the server has recorded of a shape's snapshot: complete or not. */
async function snapshotComplete(storageDir: string, handle: string): Promise<boolean> {
  const text = await readFile(join(storageDir, 'shapes', handle, 'shape.json'), 'utf8');
  return (JSON.parse(text) as { snapshotComplete: boolean }).snapshotComplete;
}

/** The headers two answers at the same (handle, offset) must share, whenever they are made. */
function servedHeaders(reply: Reply): Record<string, string | null> {
  const names = [
    'electric-handle',
    'electric-offset',
    'electric-schema',
    'electric-up-to-date',
    'electric-has-data',
    'electric-cursor',
    'cache-control',
    'etag',
  ];
  return Object.fromEntries(names.map((name) => [name, reply.headers.get(name)]));
}

describe('a snapshot served while it is being written', () => {
  test('the first chunk comes before the snapshot ends, and every chunk equals what a later reader gets', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ url, sluice }) => {
        const first = await get(url, { table: 'items', offset: '-1' });
        assert.equal(first.status, 200, first.text);
        const handle = first.headers.get('electric-handle') ?? '';
        // Ordering, not time: the server had not finished the snapshot when chunk 0 arrived.
        assert.equal(await snapshotComplete(sluice.storageDir, handle), false);
        assert.equal(first.headers.get('electric-offset'), '0_0');

        const early: Reply[] = [first];
        let offset = '0_0';
        const deadline = Date.now() + 60_000;
        while (!early.at(-1)!.headers.has('electric-up-to-date')) {
          assert.ok(Date.now() < deadline, 'the snapshot is served to its end within 60 s');
          const reply = await get(url, { table: 'items', handle, offset });
          assert.equal(reply.status, 200, reply.text);
          early.push(reply);
          offset = reply.headers.get('electric-offset') ?? '';
        }
        assert.ok(early.length > 20, `${early.length} responses`);
        const keys = early.flatMap((r) => parseBody(r).flatMap((m) => (m.key ? [m.key] : [])));
        assert.equal(new Set(keys).size, ROWS);

        // Once complete: the same answers, byte for byte, at the same offsets (what a cache holds).
        const late = await snapshotToEnd(url, { table: 'items' });
        assert.equal(late.length, early.length);
        for (const [i, reply] of late.entries()) {
          assert.deepEqual(servedHeaders(reply), servedHeaders(early[i]!), `response ${i}`);
          const isUpToDate = reply.headers.has('electric-up-to-date');
          // The last answer's up-to-date names the replication position of its moment.
          if (!isUpToDate) assert.equal(reply.text, early[i]!.text, `body of response ${i}`);
        }
      },
      CHUNKS,
    );
  });

  test('the official client, asking first, gets rows equal to SELECT', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ db, open, sluice }) => {
        const { shape, stream } = open({ params: { table: 'items' } });
        // The stream's first batch: the snapshot was not complete when it was served.
        const firstBatch = new Promise<boolean>((resolve) => {
          const unsubscribe = stream.subscribe(() => {
            unsubscribe();
            resolve(snapshotComplete(sluice.storageDir, stream.shapeHandle ?? ''));
          });
        });
        assert.equal(await firstBatch, false);
        await shape.rows;
        await assertMatchesPostgres(db, { table: 'items' }, shape);
      },
      CHUNKS,
    );
  });
});

/**
 * Sessions in a snapshot: running (or waiting to run) its COPY, or in its transaction after it.
 * Not idle ones: a pooled connection still shows the COPY it ran last (an earlier shape's).
 */
const RUNNING_COPY = `datname = current_database() AND state <> 'idle' AND query LIKE 'COPY%'`;

/** Ends the snapshots' COPY statements running (or waiting) in the test database; how many. */
async function terminateSnapshots(db: TestDatabase): Promise<number> {
  const { rows } = await db.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE ${RUNNING_COPY} AND pid <> pg_backend_pid()`,
  );
  for (const { pid } of rows) await db.query('SELECT pg_terminate_backend($1)', [pid]);
  return rows.length;
}

/** Waits until a snapshot's COPY is running (or waiting for a lock) in the test database. */
async function snapshotStarted(db: TestDatabase): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { rows } = await db.query(`SELECT 1 FROM pg_stat_activity WHERE ${RUNNING_COPY}`);
    if (rows.length > 0) return;
    assert.ok(Date.now() < deadline, 'a snapshot COPY started within 30 s');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('a snapshot that fails while it is served', () => {
  test('a client that has chunks gets a 409, then a new complete shape; the official client ends equal to SELECT', async () => {
    await withSluice(
      postgres,
      SQL,
      withoutErrorLogs(async ({ db, url, sluice, open }) => {
        const keysOf = (replies: Reply[]) =>
          new Set(replies.flatMap((r) => parseBody(r).flatMap((m) => (m.key ? [m.key] : []))));
        // The cut races the snapshot's end: the COPY seen running may have ended (and committed)
        // by the time its backend is terminated. Such a snapshot is whole, and another shape (a
        // where clause every row passes) is tried, until one is cut while it runs.
        let cut = false;
        for (let attempt = 1; attempt <= 5 && !cut; attempt++) {
          const shape = { table: 'items', where: `n > ${-attempt}` };
          const first = await get(url, { ...shape, offset: '-1' });
          assert.equal(first.status, 200, first.text);
          const handle = first.headers.get('electric-handle') ?? '';
          assert.equal(await snapshotComplete(sluice.storageDir, handle), false);
          assert.equal(await terminateSnapshots(db), 1, 'the snapshot was running');

          // Whatever was sealed before the cut is served, then the handle is gone: a 409.
          const served = [first];
          let offset = first.headers.get('electric-offset') ?? '';
          let reply: Reply;
          const deadline = Date.now() + 60_000;
          for (;;) {
            assert.ok(Date.now() < deadline, 'the snapshot ends in a 409 or whole within 60 s');
            reply = await get(url, { ...shape, handle, offset });
            if (reply.status !== 200 || reply.headers.has('electric-up-to-date')) break;
            served.push(reply);
            offset = reply.headers.get('electric-offset') ?? '';
          }
          if (reply.status === 200) {
            // It ended before the cut: then it is whole.
            assert.equal(keysOf([...served, reply]).size, ROWS);
            continue;
          }
          assert.equal(reply.status, 409, reply.text);
          cut = true;
          // The refetch makes the shape anew, complete this time.
          const again = await snapshotToEnd(url, shape);
          assert.notEqual(again[0]!.headers.get('electric-handle'), handle);
          assert.equal(keysOf(again).size, ROWS);
        }
        assert.ok(cut, 'one of 5 snapshots was cut while it ran');

        // The official client, served chunks of a snapshot that is then cut, starts again.
        const where = 'n > 10';
        const { shape, stream } = open({ params: { table: 'items', where } });
        await new Promise<void>((resolve) => {
          const unsubscribe = stream.subscribe(() => {
            unsubscribe();
            resolve();
          });
        });
        assert.equal(await snapshotComplete(sluice.storageDir, stream.shapeHandle ?? ''), false);
        assert.equal(await terminateSnapshots(db), 1, 'the snapshot was cut while it ran');
        await assertMatchesPostgres(db, { table: 'items', where }, shape, 60_000);
      }),
      CHUNKS,
    );
  });

  test('a request served none of it gets the error; the official client ends equal to SELECT', async () => {
    await withSluice(
      postgres,
      SQL,
      withoutErrorLogs(async ({ db, url, open }) => {
        const where = 'n > 10';
        // Another shape of the table first: the new one's planning has nothing left to change.
        assert.equal((await get(url, { table: 'items', offset: '-1' })).status, 200);
        const release = await lockTable(db, 'items');
        let waiting: Promise<Reply>;
        let client: ReturnType<typeof open>;
        try {
          // Both wait for the snapshot, which waits for the table: no chunk is sealed.
          waiting = get(url, { table: 'items', offset: '-1', where });
          client = open({ params: { table: 'items', where } });
          await snapshotStarted(db);
          assert.equal(await terminateSnapshots(db), 1);
          const failed = await waiting;
          assert.equal(failed.status, 503, failed.text);
        } finally {
          await release();
        }
        await assertMatchesPostgres(db, { table: 'items', where }, client.shape, 60_000);
      }),
      CHUNKS,
    );
  });
});

describe('replication down while a snapshot is served', () => {
  test('clients reading its chunks in fallback mode end equal to SELECT', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ db, url, sluice, open }) => {
        const { shape } = open({ params: { table: 'items' } });
        const first = await get(url, { table: 'items', offset: '-1' });
        assert.equal(first.status, 200, first.text);
        const handle = first.headers.get('electric-handle') ?? '';
        assert.equal(await snapshotComplete(sluice.storageDir, handle), false);
        await terminateWalsender(db, db.slotName);
        await waitForStatus(sluice.baseUrl, 'fallback', 5_000);
        // Changes while replication is down: the clients must end with them too.
        await db.query(`UPDATE items SET title = 'changed' WHERE id % 1000 = 0;
                        DELETE FROM items WHERE id % 1000 = 1;
                        INSERT INTO items VALUES (${ROWS + 1}, 'new', 0)`);

        // A raw reader, served chunks before the outage, follows the shape as a client does
        // (a 409 starts it again) until its rows are the table's.
        const expected = new Map(
          (await db.query<{ id: number; title: string }>('SELECT id, title FROM items')).rows.map(
            (r) => [String(r.id), r.title],
          ),
        );
        const rows = new Map<string, Record<string, string | null>>();
        const apply = (reply: Reply) => {
          for (const m of parseBody(reply)) {
            if (!m.key) continue;
            if (m.headers.operation === 'delete') rows.delete(m.key);
            else rows.set(m.key, { ...rows.get(m.key), ...m.value });
          }
        };
        // Its first chunk is its own (the snapshot may have ended, and the shape be served on,
        // by the time it asks again).
        apply(first);
        let params: Record<string, string> = {
          table: 'items',
          handle,
          offset: first.headers.get('electric-offset') ?? '',
        };
        const matches = () =>
          rows.size === expected.size &&
          [...rows.values()].every((row) => expected.get(row.id ?? '') === row.title);
        const deadline = Date.now() + 60_000;
        for (;;) {
          assert.ok(Date.now() < deadline, `the raw reader converges (${rows.size} rows)`);
          const reply = await get(url, params);
          if (reply.status === 409) {
            rows.clear();
            params = { table: 'items', offset: '-1' };
            continue;
          }
          assert.equal(reply.status, 200, reply.text);
          apply(reply);
          params = {
            table: 'items',
            handle: reply.headers.get('electric-handle') ?? '',
            offset: reply.headers.get('electric-offset') ?? '',
          };
          if (reply.headers.has('electric-up-to-date')) {
            if (matches()) break;
            params = {
              ...params,
              live: 'true',
              cursor: reply.headers.get('electric-cursor') ?? '',
            };
          }
        }
        await assertMatchesPostgres(db, { table: 'items' }, shape, 60_000);
      },
      { ...CHUNKS, replicationRetryMinMs: 10_000, replicationRetryMaxMs: 10_000 },
    );
  });
});
