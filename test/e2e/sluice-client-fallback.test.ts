// @sluice/client through replication outages against a real Sluice and Postgres (docs/protocol.md §7):
// it enters fallback on the first response that carries the header, stops long-polling, polls
// the status (one poller for every stream on the server), replaces its rows from fallback
// snapshots at its refresh interval (deletions included), and returns to live by itself: from
// where it left the log when the slot survived (no refetch), from a 409 when it did not. The
// official client and a raw HTTP follower follow throughout; everyone ends equal to Postgres.
import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import { HEADERS, PARAMS, PATHS } from '@sluice/protocol';
import {
  dropSlot,
  startFaultProxy,
  startPostgres,
  terminateWalsender,
  type TestPostgres,
} from '@sluice/harness';
import { Shape, ShapeStream, isChangeMessage, type Message, type Mode } from '@sluice/client';
import { fetchStatus, waitForStatus } from '../support/fallback-checks.js';
import {
  ITEMS,
  assertClientsConverged,
  assertLiveAndFollowing,
  followItems,
  itemsDatabase,
  type ItemsScenario,
} from '../support/items-scenario.js';
import { assertMatchesPostgres } from '../support/shape-oracle.js';

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

const STATUS_POLL_MS = 500;
const REFRESH_MS = 1_500;
/** The server's long-poll timeout in these tests (items-scenario.ts). */
const LONG_POLL_MS = 1_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, done: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!done()) {
    if (Date.now() - started > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await sleep(20);
  }
  return Date.now() - started;
}

interface ShapeExchange {
  /** When the request was sent and when its response arrived. */
  sent: number;
  answered: number;
  url: URL;
  status: number;
  fallback: boolean;
}

/** A fetch client that logs every shape exchange and every status request it makes. */
function recordingFetch() {
  const shapes: ShapeExchange[] = [];
  const statusPolls: number[] = [];
  const fetchClient: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : input.toString());
    const sent = Date.now();
    if (url.pathname === PATHS.status) statusPolls.push(sent);
    const response = await fetch(input, init);
    if (url.pathname === PATHS.shape) {
      const fallback = response.headers.get(HEADERS.fallbackMode) === 'true';
      shapes.push({ sent, answered: Date.now(), url, status: response.status, fallback });
    }
    return response;
  };
  return { fetchClient, shapes, statusPolls };
}

type Recording = ReturnType<typeof recordingFetch>;

/** A Sluice client on `items` (optionally a subset): stream, Shape, messages, mode changes. */
function follow(baseUrl: string, recording: Recording, where?: string) {
  const controller = new AbortController();
  const modes: { mode: Mode; at: number }[] = [];
  const stream = new ShapeStream({
    url: `${baseUrl}${PATHS.shape}`,
    params: where ? { ...ITEMS, where } : ITEMS,
    fetchClient: recording.fetchClient,
    // The long-poll client's fallback handling (status polls, refreshes); over a WebSocket the
    // status is pushed instead (test/e2e/ws-client.test.ts). Pinned so that a runtime with a
    // global WebSocket (Node 22+) tests the same path.
    liveTransport: 'long-poll',
    signal: controller.signal,
    statusPollIntervalMs: STATUS_POLL_MS,
    fallbackRefreshIntervalMs: REFRESH_MS,
    backoffOptions: { initialDelay: 100, maxDelay: 1_000, multiplier: 1.5 },
    onModeChange: (mode) => modes.push({ mode, at: Date.now() }),
  });
  const messages: Message[] = [];
  stream.subscribe((batch) => void messages.push(...batch));
  const shape = new Shape(stream);
  /** This client's shape exchanges (told apart by their where clause). */
  const exchanges = () =>
    recording.shapes.filter((e) => e.url.searchParams.get(PARAMS.where) === (where ?? null));
  /** `must-refetch` messages that were not fallback refreshes: real refetches. */
  const refetches = () =>
    messages.filter(
      (m) => !isChangeMessage(m) && m.headers.control === 'must-refetch' && !m.headers.fallback,
    ).length;
  return { stream, shape, modes, exchanges, refetches, abort: () => controller.abort() };
}

/** The official client only sees the read-only log during an outage. */
const officialHas = (s: ItemsScenario, id: number) =>
  s.official.rows.has(`"public"."items"/"${id}"`);

const isRefresh = (e: ShapeExchange) =>
  e.url.searchParams.get(PARAMS.offset) === '-1' && e.url.searchParams.has(PARAMS.cacheBuster);

test('outage with the slot kept: fallback at once, fresh rows every refresh, back to live without a refetch', async (t: TestContext) => {
  const db = await itemsDatabase(pg);
  const dbUrl = new URL(db.url);
  const proxy = await startFaultProxy({ host: dbUrl.hostname, port: Number(dbUrl.port || 5432) });
  // Replication goes through the proxy: while it resets connections the outage lasts.
  const s = await followItems(db, {
    replicationDatabaseUrl: proxy.url(db.url),
    replicationRetryMinMs: 300,
    replicationRetryMaxMs: 600,
    fallbackMaxAgeS: 1,
  });
  const base = s.sluice.baseUrl;
  const recording = recordingFetch();
  const main = follow(base, recording);
  const low = follow(base, recording, 'id <= 25');
  const high = follow(base, recording, 'id > 25');
  try {
    await assertLiveAndFollowing(s);
    await assertMatchesPostgres(db, ITEMS, () => main.shape.currentRows);
    const liveHandle = main.stream.shapeHandle;
    assert.ok(liveHandle);
    assert.deepEqual(
      main.modes.map((m) => m.mode),
      ['live'],
    );

    // The outage: the walsender is terminated and every reconnect refused.
    await terminateWalsender(db, db.slotName);
    proxy.setMode('reset');
    await waitForStatus(base, 'fallback', 10_000);
    // The header reaches the client with its held long-poll's answer.
    await until(
      'main stream in fallback',
      () => main.stream.mode === 'fallback',
      LONG_POLL_MS + 10_000,
    );
    const firstHeader = main.exchanges().find((e) => e.fallback);
    const entered = main.modes.find((m) => m.mode === 'fallback');
    assert.ok(firstHeader && entered);
    assert.ok(
      entered.at - firstHeader.answered <= STATUS_POLL_MS,
      `fallback ${entered.at - firstHeader.answered} ms after the first response with the header`,
    );
    t.diagnostic(`fallback ${entered.at - firstHeader.answered} ms after the header arrived`);
    await until(
      'all streams in fallback',
      () => [low, high].every((c) => c.stream.mode === 'fallback'),
      10_000,
    );
    const allInFallbackAt = Date.now();

    // Rows changed during the outage reach the client at its refresh interval, deletions too,
    // while the official client (read-only log) still shows the old ones.
    await s.writer.pause();
    await db.query('DELETE FROM items WHERE id IN (2, 30); UPDATE items SET v = 42 WHERE id = 4');
    await db.query(
      'INSERT INTO items VALUES (900, 9), (5, 5) ON CONFLICT (id) DO UPDATE SET v = 5',
    );
    await assertMatchesPostgres(db, ITEMS, () => main.shape.currentRows, REFRESH_MS * 4);
    await assertMatchesPostgres(
      db,
      { ...ITEMS, where: 'id <= 25' },
      () => low.shape.currentRows,
      REFRESH_MS * 4,
    );
    await assertMatchesPostgres(
      db,
      { ...ITEMS, where: 'id > 25' },
      () => high.shape.currentRows,
      REFRESH_MS * 4,
    );
    assert.equal(main.stream.mode, 'fallback');
    assert.equal((await fetchStatus(base)).status, 'fallback');
    assert.ok(!officialHas(s, 900) && officialHas(s, 2), 'the official client is still behind');
    // Writing goes on; a later refresh brings that too, and the next deletion.
    s.writer.resume();
    await sleep(REFRESH_MS);
    await s.writer.pause();
    await db.query('DELETE FROM items WHERE id = 900');
    await assertMatchesPostgres(db, ITEMS, () => main.shape.currentRows, REFRESH_MS * 4);
    assert.equal(main.stream.mode, 'fallback');
    s.writer.resume();

    // In fallback the stream only asks for fallback snapshots: no long-polls, no log reads.
    const inFallback = main.exchanges().filter((e) => e.sent > entered.at);
    assert.ok(inFallback.length >= 2, `${inFallback.length} refreshes`);
    assert.ok(inFallback.every(isRefresh), 'only fallback refreshes while in fallback');
    assert.ok(inFallback.every((e) => e.fallback));
    // Three streams, one status poller.
    const window = Date.now() - allInFallbackAt;
    const polls = recording.statusPolls.filter((at) => at >= allInFallbackAt).length;
    assert.ok(polls >= 1, 'the status is polled');
    assert.ok(
      polls <= window / STATUS_POLL_MS + 2,
      `${polls} status requests in ${window} ms for three streams`,
    );
    // Streams that leave stop their share of the polling; the one left keeps it going.
    high.stream.unsubscribeAll();
    low.abort();
    const before = recording.statusPolls.length;
    await sleep(STATUS_POLL_MS * 3);
    assert.ok(recording.statusPolls.length > before, 'the remaining stream still polls');

    // Replication is back: the status reads live and the stream resumes the log it left.
    proxy.setMode('pass');
    await waitForStatus(base, 'live', 30_000);
    const liveIn = await until(
      'main stream live',
      () => main.stream.mode === 'live',
      STATUS_POLL_MS + 10_000,
    );
    t.diagnostic(
      `${inFallback.length} refreshes, ${polls} status polls in ${window} ms of fallback`,
    );
    t.diagnostic(`live ${liveIn} ms after the server's status read live`);
    await assertClientsConverged(s, 0);
    await assertMatchesPostgres(db, ITEMS, () => main.shape.currentRows, 30_000);
    assert.deepEqual(
      main.modes.map((m) => m.mode),
      ['live', 'fallback', 'live'],
    );
    assert.equal(main.refetches(), 0, 'no refetch');
    assert.equal(main.stream.shapeHandle, liveHandle, 'the same live shape');
    assert.deepEqual(
      main.exchanges().filter((e) => e.status === 409),
      [],
      'no 409',
    );
    const resumed = main.exchanges().find((e) => e.sent > entered.at && !isRefresh(e));
    assert.equal(resumed?.url.searchParams.get(PARAMS.handle), liveHandle);
    assert.notEqual(resumed?.url.searchParams.get(PARAMS.offset), '-1');
  } finally {
    for (const client of [main, low, high]) client.abort();
    await s.close();
    await proxy.close();
    await db.drop();
  }
});

test('outage with the slot lost: back to live with exactly one refetch; aborting stops polling', async () => {
  const db = await itemsDatabase(pg);
  // A long reconnect delay keeps the outage open long enough to look at it.
  const s = await followItems(db, {
    replicationRetryMinMs: 5_000,
    replicationRetryMaxMs: 5_000,
    fallbackMaxAgeS: 1,
  });
  const base = s.sluice.baseUrl;
  const main = follow(base, recordingFetch());
  const other = recordingFetch();
  const aborted = follow(base, other, 'id <= 25');
  try {
    await assertLiveAndFollowing(s);
    await assertMatchesPostgres(db, ITEMS, () => main.shape.currentRows);
    const firstHandle = main.stream.shapeHandle;

    await dropSlot(db, db.slotName);
    await waitForStatus(base, 'fallback', 10_000);
    await until(
      'both streams in fallback',
      () => [main, aborted].every((c) => c.stream.mode === 'fallback'),
      10_000,
    );
    await until('status polled', () => other.statusPolls.length > 0, STATUS_POLL_MS * 4);
    aborted.abort();
    const polls = other.statusPolls.length;
    const requests = other.shapes.length;
    await sleep(STATUS_POLL_MS * 3);
    assert.equal(other.statusPolls.length, polls, 'no status poll after abort');
    assert.equal(other.shapes.length, requests, 'no shape request after abort');

    // A new slot: every shape was rotated, so the remembered position answers 409 once.
    await waitForStatus(base, 'live', 30_000);
    await until('main stream live', () => main.stream.mode === 'live', 10_000);
    await assertClientsConverged(s, 1);
    await assertMatchesPostgres(db, ITEMS, () => main.shape.currentRows, 30_000);
    assert.equal(main.refetches(), 1, 'one refetch');
    assert.equal(main.exchanges().filter((e) => e.status === 409).length, 1, 'one 409');
    assert.notEqual(main.stream.shapeHandle, firstHandle);
  } finally {
    main.abort();
    aborted.abort();
    await s.close();
    await db.drop();
  }
});
