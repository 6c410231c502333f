// Fallback under load (docs/protocol.md §7–8): a storm of identical initial requests costs Postgres
// one query per cache window, distinct queries beyond the limit are refused with 503 instead of
// queueing on the database, and /v1/status is cheap to poll (public max-age, etag, 304).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import {
  startPostgres,
  terminateWalsender,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import { fetchStatus, waitForStatus, type StatusBody } from '../support/fallback-checks.js';
import { metric } from '../support/metrics.js';
import { rawRequest, type RawReply } from '../support/raw-shape.js';
import { startSluice, waitUntilLive, type RunningSluice } from '../support/sluice-server.js';

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

/** Reconnect delay long enough that fallback lasts for the whole test once entered. */
const HELD_DOWN = { replicationRetryMinMs: 120_000, replicationRetryMaxMs: 120_000 };

async function fallbackCounters(baseUrl: string) {
  return {
    queries: await metric(baseUrl, 'sluice_fallback_queries_total'),
    coalesced: await metric(baseUrl, 'sluice_fallback_queries_coalesced_total'),
    rejected: await metric(baseUrl, 'sluice_fallback_rejected_total'),
  };
}

/** Starts Sluice, waits for it to be live once, then kills the walsender: fallback, held. */
async function sluiceInFallback(
  db: TestDatabase,
  overrides: Parameters<typeof startSluice>[1] = {},
): Promise<RunningSluice> {
  const sluice = await startSluice(db, { ...HELD_DOWN, ...overrides });
  await waitUntilLive(sluice.baseUrl);
  await waitForStatus(sluice.baseUrl, 'live');
  await terminateWalsender(db, db.slotName);
  const { body } = await waitForStatus(sluice.baseUrl, 'fallback', 10_000);
  assert.equal(body.replication.last_error?.code, '57P01');
  return sluice;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Counters = Awaited<ReturnType<typeof fallbackCounters>>;

/** Polls /metrics until `done` holds for the fallback counters. */
async function waitForCounters(
  baseUrl: string,
  done: (counters: Counters) => boolean,
  timeoutMs = 60_000,
): Promise<Counters> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counters = await fallbackCounters(baseUrl);
    if (done(counters)) return counters;
    if (Date.now() > deadline) assert.fail(`counters never got there: ${JSON.stringify(counters)}`);
    await pause(50);
  }
}

/**
 * Holds an ACCESS EXCLUSIVE lock on `items` in an open transaction: fallback queries on it wait
 * (they are running, as far as the server can tell) until `release()`.
 */
async function lockTable(db: TestDatabase): Promise<{ release(): Promise<void> }> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  await client.query('BEGIN');
  await client.query('LOCK TABLE items IN ACCESS EXCLUSIVE MODE');
  return {
    async release() {
      await client.query('COMMIT');
      await client.end();
    },
  };
}

/**
 * `count` identical `offset=-1` requests sent at once while the table is locked; the lock goes
 * once all of them have reached the server (one query started, the rest joined it).
 */
async function lockedBurst(
  db: TestDatabase,
  baseUrl: string,
  count: number,
): Promise<{ replies: RawReply[]; releasedAt: number }> {
  const before = await fallbackCounters(baseUrl);
  const locker = await lockTable(db);
  let releasedAt = 0;
  try {
    const pending = Promise.all(
      Array.from({ length: count }, () => rawRequest(baseUrl, { table: 'items', offset: '-1' })),
    );
    await waitForCounters(
      baseUrl,
      (c) => c.queries - before.queries >= 1 && c.coalesced - before.coalesced >= count - 1,
    );
    releasedAt = Date.now();
    await locker.release();
    return { replies: await pending, releasedAt };
  } finally {
    if (releasedAt === 0) await locker.release();
  }
}

/** Rows as [id, v] pairs sorted by id. */
const byId = (rows: number[][]): number[][] => [...rows].sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0));

/** 200s are fallback snapshots; 503s say overloaded, with retry-after and no caching. */
function assertServedAndRefused(served: RawReply[], refused: RawReply[]): void {
  for (const reply of served) {
    assert.equal(reply.headers.get('electric-fallback-mode'), 'true');
    assert.match(reply.headers.get('electric-handle') ?? '', /-fallback-/);
  }
  for (const reply of refused) {
    assert.match(reply.headers.get('retry-after') ?? '', /^\d+$/, 'retry-after');
    assert.equal(reply.headers.get('cache-control'), 'no-store');
    const body = JSON.parse(reply.text) as { code?: string };
    assert.equal(body.code, 'SLUICE_ERR_FALLBACK_OVERLOADED');
  }
}

interface Message {
  value?: Record<string, string>;
  headers: { operation?: string; control?: string };
}

/** Every reply is the same 200 fallback snapshot; returns its handle and body. */
function assertOneSnapshot(replies: RawReply[]): { handle: string; text: string } {
  const first = replies[0];
  assert.ok(first);
  assert.equal(first.status, 200, first.text);
  const handle = first.headers.get('electric-handle') ?? '';
  assert.match(handle, /-fallback-/);
  for (const reply of replies) {
    assert.equal(reply.status, 200, reply.text);
    assert.equal(reply.headers.get('electric-fallback-mode'), 'true');
    assert.equal(reply.headers.get('electric-handle'), handle, 'one snapshot, one handle');
    assert.equal(reply.text, first.text, 'one snapshot, one body');
  }
  return { handle, text: first.text };
}

test('storm of identical fallback requests: one query per window, all served', async () => {
  const db = await postgres.createDatabase();
  await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
  await db.query('INSERT INTO items SELECT g, g % 97 FROM generate_series(1, 2000) g');
  // 300 requests, three times the default limit of concurrent initial requests: in fallback,
  // requests joining a running query are not counted against it.
  const windowS = 3;
  const sluice = await sluiceInFallback(db, { fallbackMaxAgeS: windowS });
  try {
    const start = await fallbackCounters(sluice.baseUrl);
    // The table is locked until all 300 requests have arrived, so they all meet the one query
    // while it runs, however slowly this machine delivers them.
    const storm = await lockedBurst(db, sluice.baseUrl, 300);
    const first = assertOneSnapshot(storm.replies);
    assert.equal(storm.replies[0]?.headers.get('cache-control'), `public, max-age=${windowS}`);
    const messages = JSON.parse(first.text) as Message[];
    assert.equal(messages.at(-1)?.headers.control, 'up-to-date');
    const rows = messages
      .filter((message) => message.headers.operation === 'insert')
      .map((message) => [Number(message.value?.id), Number(message.value?.v)]);
    const expected = (await db.query<{ id: number; v: number }>('SELECT id, v FROM items')).rows;
    assert.deepEqual(byId(rows), byId(expected.map((row) => [row.id, row.v])), 'rows = SELECT');
    const afterStorm = await fallbackCounters(sluice.baseUrl);
    assert.equal(afterStorm.queries - start.queries, 1, 'one query for the whole storm');
    assert.equal(afterStorm.coalesced - start.coalesced, 299, 'every other request coalesced');
    assert.equal(afterStorm.rejected - start.rejected, 0);

    // Within the window (3 s from the end of the query, which is after the lock went) an
    // identical request gets the same snapshot without a query. Only checked when this machine
    // was fast enough for the request to provably fall inside the window.
    const late = await rawRequest(sluice.baseUrl, { table: 'items', offset: '-1' });
    const sinceRelease = Date.now() - storm.releasedAt;
    const afterLate = await fallbackCounters(sluice.baseUrl);
    if (sinceRelease < windowS * 1_000 - 100) {
      assert.equal(late.headers.get('electric-handle'), first.handle, 'served from the window');
      assert.equal(late.text, first.text);
      assert.equal(afterLate.queries, afterStorm.queries);
      assert.equal(afterLate.coalesced - afterStorm.coalesced, 1);
    } else {
      assert.equal(late.status, 200);
    }

    // Past the window, the next storm costs one fresh query: new handle, current rows.
    await pause(windowS * 1_000 + 500);
    await db.query('UPDATE items SET v = -1 WHERE id <= 10');
    const second = await lockedBurst(db, sluice.baseUrl, 300);
    const next = assertOneSnapshot(second.replies);
    assert.notEqual(next.handle, first.handle);
    assert.match(next.text, /"id":"10","v":"-1"/);
    const afterSecond = await fallbackCounters(sluice.baseUrl);
    assert.equal(afterSecond.queries - afterLate.queries, 1, 'one more query after the window');
    assert.equal(afterSecond.coalesced - afterLate.coalesced, 299);
    assert.equal(afterSecond.rejected - start.rejected, 0);
    assert.equal((await fetchStatus(sluice.baseUrl)).status, 'fallback', 'held down throughout');
  } finally {
    await sluice.close();
    await db.drop();
  }
});

test('distinct fallback queries beyond maxConcurrentFallback get 503 overloaded', async () => {
  const db = await postgres.createDatabase();
  await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
  await db.query('INSERT INTO items SELECT g, g % 97 FROM generate_series(1, 200000) g');
  const sluice = await sluiceInFallback(db, { maxConcurrentFallback: 2 });
  const shape = (where: string) => ({ table: 'items', offset: '-1', where });
  try {
    // 20 distinct shapes at once over a big table: the queries overlap.
    let before = await fallbackCounters(sluice.baseUrl);
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, n) => rawRequest(sluice.baseUrl, shape(`id > ${n * 1_000}`))),
    );
    const statuses = replies.map((reply) => reply.status).join(',');
    const served = replies.filter((reply) => reply.status === 200);
    const refused = replies.filter((reply) => reply.status === 503);
    assert.equal(served.length + refused.length, 20, `only 200 and 503: ${statuses}`);
    assert.ok(served.length >= 2, `the first two ran: ${statuses}`);
    assert.ok(refused.length >= 1, `some refused: ${statuses}`);
    assertServedAndRefused(served, refused);
    let counters = await fallbackCounters(sluice.baseUrl);
    assert.equal(counters.rejected - before.rejected, refused.length, 'each 503 counted');
    assert.equal(counters.queries - before.queries, served.length, 'one query per 200');
    assert.equal(counters.coalesced - before.coalesced, 0, 'distinct shapes never coalesce');

    // A refused shape is served when asked again once the others are done.
    const index = replies.findIndex((reply) => reply.status === 503);
    const retried = await rawRequest(sluice.baseUrl, shape(`id > ${index * 1_000}`));
    assert.equal(retried.status, 200, retried.text);

    // Exactly: with the table locked, the first two queries hold the only two places until the
    // other 18 have been refused.
    before = await fallbackCounters(sluice.baseUrl);
    const locker = await lockTable(db);
    let released = false;
    try {
      const pending = Array.from({ length: 20 }, (_, n) =>
        rawRequest(sluice.baseUrl, shape(`id < ${(n + 1) * 10}`)),
      );
      await waitForCounters(
        sluice.baseUrl,
        (c) => c.queries - before.queries === 2 && c.rejected - before.rejected === 18,
      );
      await locker.release();
      released = true;
      const locked = await Promise.all(pending);
      const codes = locked.map((reply) => reply.status);
      assert.equal(codes.filter((code) => code === 200).length, 2, codes.join(','));
      assert.equal(codes.filter((code) => code === 503).length, 18, codes.join(','));
      assertServedAndRefused(
        locked.filter((reply) => reply.status === 200),
        locked.filter((reply) => reply.status === 503),
      );
    } finally {
      if (!released) await locker.release();
    }
    counters = await fallbackCounters(sluice.baseUrl);
    assert.equal(counters.queries - before.queries, 2);
    assert.equal(counters.rejected - before.rejected, 18);
    assert.equal(counters.coalesced - before.coalesced, 0);
  } finally {
    await sluice.close();
    await db.drop();
  }
});

test('/v1/status: public max-age=5, etag, 304 while unchanged, 200 after a state change', async () => {
  const db = await postgres.createDatabase();
  await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
  const sluice = await startSluice(db, HELD_DOWN);
  try {
    await waitUntilLive(sluice.baseUrl);
    await waitForStatus(sluice.baseUrl, 'live');
    const status = () => fetch(`${sluice.baseUrl}/v1/status`);
    const revalidate = (etag: string) =>
      fetch(`${sluice.baseUrl}/v1/status`, { headers: { 'if-none-match': etag } });

    // The document carries slot lag figures that a probe may refresh between two requests:
    // a 200 to a revalidation is right only if the document did change.
    let liveEtag = '';
    let liveBody = '';
    let notModified = false;
    for (let attempt = 0; attempt < 5 && !notModified; attempt++) {
      const response = await status();
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('cache-control'), 'public, max-age=5');
      liveEtag = response.headers.get('etag') ?? '';
      assert.ok(liveEtag !== '', 'etag present');
      liveBody = await response.text();
      assert.equal((JSON.parse(liveBody) as StatusBody).status, 'live');
      const again = await revalidate(liveEtag);
      const text = await again.text();
      if (again.status === 304) {
        notModified = true;
        assert.equal(text, '');
        // A 304 carries what the 200 did, or caches would stop caching the document.
        assert.equal(again.headers.get('cache-control'), 'public, max-age=5');
        assert.equal(again.headers.get('etag'), liveEtag);
      } else {
        assert.equal(again.status, 200);
        assert.notEqual(text, liveBody, 'a 200 to If-None-Match only when the status changed');
        assert.notEqual(again.headers.get('etag'), liveEtag);
      }
    }
    assert.ok(notModified, 'If-None-Match with the current etag answers 304');

    await terminateWalsender(db, db.slotName);
    await waitForStatus(sluice.baseUrl, 'fallback', 10_000);
    const changed = await revalidate(liveEtag);
    assert.equal(changed.status, 200, 'the old etag is stale once the state changed');
    assert.equal(changed.headers.get('cache-control'), 'public, max-age=5');
    const fallbackEtag = changed.headers.get('etag') ?? '';
    assert.ok(fallbackEtag !== '' && fallbackEtag !== liveEtag, 'a new etag');
    const body = JSON.parse(await changed.text()) as StatusBody;
    assert.equal(body.status, 'fallback');
    assert.equal(body.replication.last_error?.code, '57P01');
  } finally {
    await sluice.close();
    await db.drop();
  }
});
