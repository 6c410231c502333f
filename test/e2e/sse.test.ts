// SSE live mode (docs/protocol.md §3.9): the official client with `liveSse: true` against a real
// Sluice, and raw streams read byte by byte. The client must really stream (several batches on
// one connection, never falling back to long-polling), resume from the LSN of each `up-to-date`
// without loss, and end with its rows equal to SELECT in Postgres.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import { installBrowserGlobals } from '../support/browser-globals.js';
import { metric } from '../support/metrics.js';
import {
  assertMatchesPostgres,
  unrefClientSaveTimers,
  withSluice,
} from '../support/shape-oracle.js';
import { dataOf, isUpToDate, openSse } from '../support/sse-reader.js';
import { assertNeverLongPolled, tapFetch, upToDatesIn } from '../support/sse-tap.js';
import { get, parseBody, snapshotToEnd } from './shape-http-helpers.js';

unrefClientSaveTimers();
installBrowserGlobals();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const SQL = `CREATE TABLE items (id int PRIMARY KEY, title text);
  INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 20) i;
  CREATE TABLE other (id serial PRIMARY KEY, note text);`;
const ITEMS = { table: 'items' };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, done: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(25);
  }
}

/** Syncs `items` to its end over HTTP: where a live request starts. */
async function syncToEnd(url: string): Promise<{ handle: string; offset: string }> {
  const last = (await snapshotToEnd(url, ITEMS)).at(-1);
  assert.ok(last);
  return {
    handle: last.headers.get('electric-handle') ?? '',
    offset: last.headers.get('electric-offset') ?? '',
  };
}

describe('SSE live mode with the official client', () => {
  test('initial sync, then inserts, updates, deletes and a multi-change transaction streamed', async () => {
    await withSluice(
      postgres,
      SQL,
      async (fixture) => {
        const { db } = fixture;
        const tap = tapFetch();
        const { shape } = fixture.open({
          params: ITEMS,
          liveSse: true,
          warnOnHttp: false,
          fetchClient: tap.fetchClient,
        });
        await assertMatchesPostgres(db, ITEMS, shape);
        await waitFor('an SSE stream is open', () => tap.requests.some((r) => r.sse));

        for (let i = 21; i <= 30; i++) {
          await db.query(`INSERT INTO items VALUES ($1::int, 'new ' || $1::text)`, [i]);
          await sleep(50);
        }
        await db.query(`UPDATE items SET title = 'changed' WHERE id IN (2, 22)`);
        await db.query('DELETE FROM items WHERE id IN (3, 23)');
        await db.query(`BEGIN;
          INSERT INTO items VALUES (100, 'a'), (101, 'b'), (102, 'c');
          UPDATE items SET title = 'b2' WHERE id = 101;
          DELETE FROM items WHERE id IN (100, 4);
          UPDATE items SET id = 103 WHERE id = 5;
          COMMIT`);
        await assertMatchesPostgres(db, ITEMS, shape);

        const streams = tap.requests.filter((r) => r.sse);
        assert.ok(
          streams.some((r) => upToDatesIn(r) >= 2),
          `one stream carried several batches: ${streams.map(upToDatesIn).join(', ')}`,
        );
        assertNeverLongPolled(tap);
      },
      { sseTimeoutMs: 20_000, sseKeepAliveMs: 1_000 },
    );
  });

  test('a reconnect after the timeout resumes at the LSN of the last transaction, while other tables commit', async () => {
    await withSluice(
      postgres,
      SQL,
      async (fixture) => {
        const { db } = fixture;
        const tap = tapFetch();
        const { shape, stream } = fixture.open({
          params: ITEMS,
          liveSse: true,
          warnOnHttp: false,
          fetchClient: tap.fetchClient,
        });
        await assertMatchesPostgres(db, ITEMS, shape);
        await waitFor('an SSE stream is open', () => tap.requests.some((r) => r.sse));

        // A transaction of several changes on the shape, then commits elsewhere only: the
        // replication position moves past the shape's last change.
        await db.query(`BEGIN;
          INSERT INTO items VALUES (200, 'x'), (201, 'y');
          UPDATE items SET title = 'y2' WHERE id = 201;
          UPDATE items SET title = 'z' WHERE id = 1;
          DELETE FROM items WHERE id = 200;
          COMMIT`);
        await assertMatchesPostgres(db, ITEMS, shape);
        for (let i = 0; i < 5; i++) await db.query(`INSERT INTO other (note) VALUES ('n')`);

        // The stream that carried it: its up-to-date names that transaction's LSN.
        const carrier = tap.requests.find((r) => r.sse && r.body.includes('"y2"'));
        assert.ok(carrier, 'a stream carried the transaction');
        const lsn = /"lsn":"(\d+)"[^\n]*"y2"|"y2"[^\n]*"lsn":"(\d+)"/.exec(carrier.body);
        const txLsn = lsn?.[1] ?? lsn?.[2];
        assert.ok(txLsn, carrier.body);
        assert.ok(carrier.body.includes(`"global_last_seen_lsn":"${txLsn}"`), carrier.body);

        // The stream times out and the client comes back from `<lsn>_0`: accepted (not out of
        // bounds), and the transaction's later changes read again leave the rows right.
        await waitFor(
          'the client reconnected',
          () =>
            tap.requests.some((r) => r.sse && r.url.searchParams.get('offset') === `${txLsn}_0`),
          15_000,
        );
        const again = tap.requests.find((r) => r.url.searchParams.get('offset') === `${txLsn}_0`);
        await waitFor('the reconnect answered', () => again?.status !== undefined);
        assert.equal(again?.status, 200);
        await db.query(`INSERT INTO items VALUES (300, 'after')`);
        await db.query(`UPDATE items SET title = 'y3' WHERE id = 201`);
        await assertMatchesPostgres(db, ITEMS, shape);
        assert.ok(!stream.error, String(stream.error));
        assertNeverLongPolled(tap);
      },
      { sseTimeoutMs: 2_000, sseKeepAliveMs: 500 },
    );
  });

  test('many changes across many chunks stream in batches of at most a chunk', async () => {
    await withSluice(
      postgres,
      SQL,
      async (fixture) => {
        const { db, url, sluice } = fixture;
        const start = await syncToEnd(url);
        const tap = tapFetch();
        const { shape } = fixture.open({
          params: ITEMS,
          liveSse: true,
          warnOnHttp: false,
          fetchClient: tap.fetchClient,
        });
        await assertMatchesPostgres(db, ITEMS, shape);
        await waitFor('an SSE stream is open', () => tap.requests.some((r) => r.sse));
        for (let batch = 0; batch < 40; batch++) {
          const first = 1_000 + batch * 25;
          await db.query(
            `INSERT INTO items SELECT i, repeat('x', 40) FROM generate_series($1::int, $1::int + 24) i`,
            [first],
          );
          if (batch % 5 === 0) await db.query(`UPDATE items SET title = 'u' WHERE id % 7 = 0`);
          if (batch % 8 === 0) await db.query('DELETE FROM items WHERE id % 11 = 0');
        }
        await db.query(`INSERT INTO items SELECT i, 'big' FROM generate_series(5000, 5300) i`);
        await assertMatchesPostgres(db, ITEMS, shape);
        assertNeverLongPolled(tap);

        // A stream opened far behind sends the log a chunk at a time, each with its up-to-date.
        const behind = await openSse(sluice.baseUrl, { ...ITEMS, ...start, cursor: '' });
        assert.equal(behind.status, 200, behind.text);
        await waitFor('the stream caught up', () =>
          dataOf(behind).some((m) => m.key?.endsWith('/"5300"')),
        );
        behind.close();
        const upToDates = dataOf(behind).filter(isUpToDate).length;
        assert.ok(upToDates >= 3, `${upToDates} batches`);
      },
      { sseTimeoutMs: 20_000, sseKeepAliveMs: 1_000, chunkBytes: 4_096 },
    );
  });
});

describe('SSE live mode on the wire', () => {
  test('headers, nothing at connect, keep-alives, and the end after the timeout', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ url, sluice }) => {
        const { handle, offset } = await syncToEnd(url);
        const cursor = '99999999999';
        const openedAt = Date.now();
        const stream = await openSse(sluice.baseUrl, { ...ITEMS, handle, offset, cursor });
        assert.equal(stream.status, 200, stream.text);
        const h = stream.headers;
        assert.equal(h.get('content-type'), 'text/event-stream');
        assert.equal(h.get('cache-control'), 'public, max-age=2');
        assert.equal(h.get('x-accel-buffering'), 'no');
        assert.equal(h.get('electric-handle'), handle);
        assert.equal(h.get('electric-offset'), offset);
        assert.ok(BigInt(h.get('electric-cursor') ?? '0') > BigInt(cursor), 'cursor moves on');
        assert.ok(h.get('etag'));
        assert.equal(h.get('electric-schema'), null);
        assert.equal(h.get('electric-up-to-date'), null);
        assert.equal(h.get('electric-fallback-mode'), null);
        assert.ok(h.get('access-control-allow-origin'));

        await stream.ended;
        const elapsed = Date.now() - openedAt;
        assert.ok(elapsed >= 2_900, `open for the whole timeout, ended after ${elapsed} ms`);
        assert.ok(elapsed < 15_000, `ended after ${elapsed} ms`);
        assert.deepEqual(dataOf(stream), [], 'nothing but comments while caught up');
        const comments = stream.items.filter((item) => item.kind === 'comment');
        assert.ok(comments.length >= 3, `${comments.length} keep-alives`);
        assert.ok(comments.every((c) => c.kind === 'comment' && c.text === 'keep-alive'));
      },
      { sseTimeoutMs: 3_000, sseKeepAliveMs: 500 },
    );
  });

  test('each cursor is strictly greater than the one the request sent', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ url, sluice }) => {
        const { handle, offset } = await syncToEnd(url);
        let cursor = '';
        for (let i = 0; i < 4; i++) {
          const stream = await openSse(sluice.baseUrl, { ...ITEMS, handle, offset, cursor });
          const next = stream.headers.get('electric-cursor') ?? '';
          stream.close();
          assert.ok(/^\d+$/.test(next), next);
          if (cursor !== '') assert.ok(BigInt(next) > BigInt(cursor), `${next} after ${cursor}`);
          cursor = next;
        }
      },
      { sseTimeoutMs: 10_000, sseKeepAliveMs: 1_000 },
    );
  });

  test('behind at open: the catch-up at once, then held for later changes on the same stream', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ db, url, sluice }) => {
        const { handle, offset } = await syncToEnd(url);
        await db.query(`INSERT INTO items VALUES (50, 'a'), (51, 'b')`);
        const stream = await openSse(sluice.baseUrl, { ...ITEMS, handle, offset, cursor: '' });
        assert.equal(stream.headers.get('electric-offset'), offset);
        // Replication may take a moment: the changes come as one batch either way.
        await waitFor('the catch-up', () => dataOf(stream).some(isUpToDate));
        const first = dataOf(stream);
        assert.deepEqual(
          first.map((m) => m.key ?? m.headers.control),
          ['"public"."items"/"50"', '"public"."items"/"51"', 'up-to-date'],
        );
        assert.equal(first[2]?.headers.global_last_seen_lsn, first[1]?.headers.lsn);

        await db.query(`UPDATE items SET title = 'c' WHERE id = 50`);
        await waitFor('the second batch', () => dataOf(stream).filter(isUpToDate).length === 2);
        const second = dataOf(stream).slice(3);
        assert.equal(second[0]?.headers.operation, 'update');
        assert.equal(second[1]?.headers.global_last_seen_lsn, second[0]?.headers.lsn);
        stream.close();
      },
      { sseTimeoutMs: 20_000, sseKeepAliveMs: 1_000 },
    );
  });

  test('refusals: live_sse without live, an offset inside the snapshot or past the end', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ url }) => {
        const { handle, offset } = await syncToEnd(url);
        for (const name of ['live_sse', 'experimental_live_sse']) {
          const reply = await get(url, { ...ITEMS, handle, offset, [name]: 'true' });
          assert.equal(reply.status, 400, reply.text);
          assert.deepEqual(reply.json(), {
            message: 'Invalid request',
            errors: { [name]: ['is only allowed with live=true'] },
          });
        }
        const longPoll = await get(url, {
          ...ITEMS,
          handle,
          offset,
          live: 'true',
          live_sse: 'false',
          experimental_live_sse: 'true',
          cursor: '',
        });
        assert.equal(longPoll.status, 200);
        assert.match(longPoll.headers.get('content-type') ?? '', /^application\/json/);
        assert.ok(Array.isArray(parseBody(longPoll)));

        const sse = { ...ITEMS, handle, live: 'true', live_sse: 'true', cursor: '' };
        const inSnapshot = await get(url, { ...sse, offset: '0_0' });
        assert.equal(inSnapshot.status, 400, inSnapshot.text);
        assert.match(
          inSnapshot.text,
          /"offset":\["must be at or after the end of the initial snapshot/,
        );
        const [tx] = offset.split('_');
        const past = await get(url, { ...sse, offset: `${BigInt(tx ?? '0') + 1_000_000n}_0` });
        assert.equal(past.status, 400, past.text);
        assert.deepEqual(past.json(), {
          message: 'Invalid request',
          errors: { offset: ['out of bounds'] },
        });
      },
      { sseTimeoutMs: 10_000, sseKeepAliveMs: 1_000, longPollTimeoutMs: 500 },
    );
  });

  test('a stream ends when its shape is deleted, and the next request gets the 409', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ url, sluice }) => {
        const { handle, offset } = await syncToEnd(url);
        const stream = await openSse(sluice.baseUrl, { ...ITEMS, handle, offset, cursor: '' });
        assert.equal(stream.status, 200);
        const deleted = await fetch(`${url}?table=items`, { method: 'DELETE' });
        assert.equal(deleted.status, 202);
        await stream.ended;
        assert.deepEqual(dataOf(stream), []);
        const next = await get(url, { ...ITEMS, handle, offset, live: 'true', live_sse: 'true' });
        assert.equal(next.status, 409);
        assert.notEqual(next.headers.get('electric-handle'), handle);
      },
      { sseTimeoutMs: 60_000, sseKeepAliveMs: 1_000, enableShapeDelete: true },
    );
  });

  test('open streams count as held live requests, per client too, until they end', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ url, sluice }) => {
        const { handle, offset } = await syncToEnd(url);
        const params = { ...ITEMS, handle, offset, cursor: '' };
        const first = await openSse(sluice.baseUrl, params);
        assert.equal(first.status, 200);
        assert.equal(await metric(sluice.baseUrl, 'sluice_http_long_polls_held'), 1);
        const second = await openSse(sluice.baseUrl, params);
        assert.equal(second.status, 503, second.text);
        assert.match(second.text, /SLUICE_ERR_OVERLOADED_PER_CLIENT/);
        first.close();
        let third = await openSse(sluice.baseUrl, params);
        for (let i = 0; i < 200 && third.status === 503; i++) {
          await sleep(50);
          third = await openSse(sluice.baseUrl, params);
        }
        assert.equal(third.status, 200, third.text);
        third.close();
        for (let i = 0; i < 200; i++) {
          if ((await metric(sluice.baseUrl, 'sluice_http_long_polls_held')) === 0) break;
          await sleep(50);
        }
        assert.equal(await metric(sluice.baseUrl, 'sluice_http_long_polls_held'), 0);
        const streams = await metric(sluice.baseUrl, 'sluice_http_requests_total', [
          'kind="live-sse"',
          'status="499"',
        ]);
        assert.ok(streams >= 2, `${streams} streams recorded`);
      },
      { sseTimeoutMs: 60_000, sseKeepAliveMs: 1_000, maxLivePerClient: 1 },
    );
  });

  test('shutdown ends open streams at once', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ url, sluice }) => {
        const { handle, offset } = await syncToEnd(url);
        const stream = await openSse(sluice.baseUrl, { ...ITEMS, handle, offset, cursor: '' });
        assert.equal(stream.status, 200);
        const closing = Date.now();
        // The stream may end (cut by the closing server) before close() resolves: awaited
        // from now on, so that is not an unhandled rejection.
        const ended = stream.ended.catch(() => undefined);
        await sluice.app.close();
        await ended;
        const elapsed = Date.now() - closing;
        assert.ok(elapsed < 10_000, `closed after ${elapsed} ms with a 60 s stream open`);
        assert.deepEqual(dataOf(stream), []);
      },
      { sseTimeoutMs: 60_000, sseKeepAliveMs: 20_000 },
    );
  });
});
