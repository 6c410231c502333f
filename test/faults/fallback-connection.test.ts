// Fallback mode when the network or Postgres itself fails (docs/protocol.md §7–8): a reset replication
// connection, a black-holed one (noticed only by liveness pings), and Postgres stopped outright
// (unavailable: 503 for new shapes, read-only logs for existing handles). In each, a writer runs
// and two followers (the official client and a raw one) follow throughout; they end equal to
// Postgres, with no refetch (the slot survives) and no change delivered twice.
import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import {
  proxyTargetOf,
  startFaultProxy,
  startPostgres,
  type FaultProxy,
  type TestPostgres,
} from '@sluice/harness';
import { fetchStatus, waitForStatus, type StatusBody } from '../support/fallback-checks.js';
import {
  assertClientsConverged,
  assertLiveAndFollowing,
  assertSnapshotWithWriterPaused,
  followItems,
  itemsDatabase,
  ITEMS,
} from '../support/items-scenario.js';
import { rawRequest, readToEnd } from '../support/raw-shape.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

/** A distinct replication failure as `/v1/status` reported it. */
interface SeenError {
  code: string;
  at: string;
  status: StatusBody['status'];
}

function seenError(body: StatusBody): SeenError {
  const last = body.replication.last_error;
  assert.ok(last, 'a replication error is shown');
  return { code: last.code, at: last.at, status: body.status };
}

/**
 * Polls `/v1/status` until `done` holds for the failures seen so far (each distinct
 * `last_error` once, in order), checking every body with `check`. Fails after `timeoutMs`.
 */
async function watchErrors(
  baseUrl: string,
  options: {
    timeoutMs: number;
    done(errors: SeenError[]): boolean;
    check(body: StatusBody): void;
    initial?: SeenError[];
  },
): Promise<SeenError[]> {
  const errors = [...(options.initial ?? [])];
  const started = Date.now();
  for (;;) {
    const body = await fetchStatus(baseUrl);
    options.check(body);
    const last = body.replication.last_error;
    if (last && errors.at(-1)?.at !== last.at)
      errors.push({ code: last.code, at: last.at, status: body.status });
    if (options.done(errors)) return errors;
    if (Date.now() - started > options.timeoutMs) {
      assert.fail(`gave up after ${options.timeoutMs} ms; errors seen: ${JSON.stringify(errors)}`);
    }
    await sleep(100);
  }
}

/** Codes a reset replication connection may be reported with: specific ones, never UNKNOWN. */
const RESET_CODES = ['ECONNRESET', 'CONNECTION_LOST'];

test('replication connection reset: fallback with a specific code, fresh snapshot, back to live', async (t: TestContext) => {
  const db = await itemsDatabase(pg);
  const proxy: FaultProxy = await startFaultProxy(proxyTargetOf(db.url));
  const s = await followItems(db, { replicationDatabaseUrl: proxy.url(db.url) });
  try {
    await assertLiveAndFollowing(s);
    const base = s.sluice.baseUrl;

    // Every connection is reset, and so is every new one while the mode lasts.
    proxy.setMode('reset');
    const resetAt = Date.now();
    const { body, elapsedMs } = await waitForStatus(base, 'fallback', 15_000);
    t.diagnostic(`reset: left live in ${elapsedMs} ms, code ${body.replication.last_error?.code}`);
    assert.ok(elapsedMs < 5_000, `left live in ${elapsedMs} ms`);
    assert.equal(body.replication_available, false);
    assert.ok(
      RESET_CODES.includes(body.replication.last_error?.code ?? ''),
      `specific reset code, got ${JSON.stringify(body.replication.last_error)}`,
    );
    assert.equal(body.database.primary, 'up', 'queries go direct and still work');
    assert.equal(body.shapes.state, 'read_only');

    // Reconnects during the reset fail too, with specific codes, and the state stays fallback.
    const errors = await watchErrors(base, {
      timeoutMs: 15_000,
      initial: [seenError(body)],
      done: (seen) => seen.length >= 3 && Date.now() - resetAt >= 3_000,
      check: (current) => {
        assert.equal(current.status, 'fallback', `still fallback: ${JSON.stringify(current)}`);
        assert.equal(current.database.primary, 'up');
      },
    });
    t.diagnostic(`reset: failures seen ${errors.map((e) => e.code).join(', ')}`);
    for (const error of errors) {
      assert.ok(RESET_CODES.includes(error.code), `specific reset code, got ${error.code}`);
    }

    await assertSnapshotWithWriterPaused(s);

    proxy.setMode('pass');
    const { body: live, elapsedMs: recoveredIn } = await waitForStatus(base, 'live', 15_000);
    t.diagnostic(`reset: live again ${recoveredIn} ms after the network came back`);
    assert.equal(live.replication.state, 'streaming');

    await assertClientsConverged(s, 0);
  } finally {
    await s.close();
    await proxy.close();
    await db.drop();
  }
});

test('replication connection black-holed: liveness notices within the bound, back to live', async (t: TestContext) => {
  const livenessTimeoutMs = 3_000;
  const db = await itemsDatabase(pg);
  const proxy = await startFaultProxy(proxyTargetOf(db.url));
  const s = await followItems(db, {
    replicationDatabaseUrl: proxy.url(db.url),
    replicationLivenessTimeoutMs: livenessTimeoutMs,
  });
  try {
    await assertLiveAndFollowing(s);
    const base = s.sluice.baseUrl;

    // TCP stays up but nothing crosses: only the liveness pings can notice.
    proxy.setMode('blackhole');
    const { body, elapsedMs } = await waitForStatus(base, ['fallback', 'unavailable'], 30_000);
    t.diagnostic(
      `blackhole: left live in ${elapsedMs} ms (liveness timeout ${livenessTimeoutMs} ms), code ${body.replication.last_error?.code}`,
    );
    assert.ok(
      elapsedMs < livenessTimeoutMs + 2_500,
      `left live in ${elapsedMs} ms, bound ${livenessTimeoutMs + 2_500} ms`,
    );
    assert.equal(body.status, 'fallback', 'the database still answers queries');
    assert.equal(body.replication.last_error?.code, 'REPLICATION_SILENT');
    assert.equal(body.database.primary, 'up');
    assert.equal(body.shapes.state, 'read_only');

    // While still black-holed, reconnects get no answer and time out; the state stays fallback.
    const errors = await watchErrors(base, {
      timeoutMs: 30_000,
      initial: [seenError(body)],
      done: (seen) => seen.length >= 3,
      check: (current) => {
        assert.equal(current.status, 'fallback', `still fallback: ${JSON.stringify(current)}`);
        assert.equal(current.database.primary, 'up');
      },
    });
    t.diagnostic(`blackhole: failures seen ${errors.map((e) => `${e.code}@${e.at}`).join(', ')}`);
    // A reconnect gets no answer at all: it is given up after the timeout as CONNECT_TIMEOUT.
    for (const error of errors.slice(1)) {
      assert.equal(error.code, 'CONNECT_TIMEOUT', 'a reconnect into the black hole times out');
    }

    await assertSnapshotWithWriterPaused(s);

    proxy.setMode('pass');
    const { body: live, elapsedMs: recoveredIn } = await waitForStatus(base, 'live', 15_000);
    t.diagnostic(`blackhole: live again ${recoveredIn} ms after the network came back`);
    assert.ok(recoveredIn < 15_000);
    assert.equal(live.replication.state, 'streaming');

    await assertClientsConverged(s, 0);
  } finally {
    await s.close();
    await proxy.close();
    await db.drop();
  }
});

test('Postgres stopped: unavailable, 503 for new shapes, read-only log for existing handles, back to live', async (t: TestContext) => {
  // Its own cluster: stopping it must not touch the other tests' databases.
  const own = await startPostgres();
  if (!own.owned || !own.cluster) {
    await own.stop();
    t.skip('needs a harness-owned Postgres (unset TEST_DATABASE_URL)');
    return;
  }
  const cluster = own.cluster;
  const db = await itemsDatabase(own);
  const s = await followItems(db, {});
  try {
    await assertLiveAndFollowing(s);
    const base = s.sluice.baseUrl;
    // Where a client following the shape stands (the followers' handle).
    const position = await readToEnd(base, ITEMS);
    assert.equal(position.handle, s.official.stream.shapeHandle, 'the followers share the handle');

    const stopping = Date.now();
    await cluster.shutdown('fast');
    const stoppedAt = Date.now();
    const { body, elapsedMs } = await waitForStatus(base, 'unavailable', 20_000);
    t.diagnostic(
      `restart: pg_ctl stop took ${stoppedAt - stopping} ms; unavailable ${elapsedMs} ms after it returned, code ${body.replication.last_error?.code}`,
    );
    assert.equal(body.database.primary, 'down');
    assert.equal(body.replication_available, false);
    assert.equal(body.shapes.state, 'read_only');

    // A new shape cannot be answered: 503 with retry-after, not cached.
    const initial = await rawRequest(base, { ...ITEMS, offset: '-1' });
    assert.equal(initial.status, 503, `offset=-1 while down: ${initial.text}`);
    assert.ok(initial.headers.get('retry-after'), 'retry-after on the 503');
    assert.match(initial.headers.get('cache-control') ?? '', /no-store/);

    // An existing handle is served from its log, read-only and marked as fallback.
    const fromLog = await rawRequest(base, { ...ITEMS, ...position });
    assert.equal(fromLog.status, 200, `existing handle while down: ${fromLog.text}`);
    assert.equal(fromLog.headers.get('electric-fallback-mode'), 'true');
    assert.equal(fromLog.headers.get('electric-handle'), position.handle);
    const messages = JSON.parse(fromLog.text) as { headers: { control?: string } }[];
    assert.ok(Array.isArray(messages), 'a JSON array of messages');
    // Its live request is held, then says up-to-date, still marked.
    const offset = fromLog.headers.get('electric-offset') ?? position.offset;
    const held = await rawRequest(base, {
      ...ITEMS,
      handle: position.handle,
      offset,
      live: 'true',
      cursor: fromLog.headers.get('electric-cursor') ?? '',
    });
    assert.equal(held.status, 200, `live on existing handle while down: ${held.text}`);
    assert.equal(held.headers.get('electric-fallback-mode'), 'true');
    assert.equal(
      (JSON.parse(held.text) as { headers: { control?: string } }[]).at(-1)?.headers.control,
      'up-to-date',
    );
    // Still unavailable throughout.
    assert.equal((await fetchStatus(base)).status, 'unavailable');

    // Keep the outage going a moment so the followers and the writer live through it.
    const downFor = Date.now() - stoppedAt;
    if (downFor < 3_000) await sleep(3_000 - downFor);
    await own.start();
    const { body: live, elapsedMs: recoveredIn } = await waitForStatus(base, 'live', 30_000);
    t.diagnostic(`restart: live again ${recoveredIn} ms after Postgres started`);
    assert.equal(live.replication.state, 'streaming');
    // Replication may be back before the next database probe (every second while degraded)
    // has run: the status can say live with the primary still down for up to that long.
    const probedAt = Date.now();
    let primary = live.database.primary;
    while (primary !== 'up' && Date.now() - probedAt < 10_000) {
      await sleep(100);
      primary = (await fetchStatus(base)).database.primary;
    }
    t.diagnostic(
      `restart: live with primary ${live.database.primary}; primary up ${Date.now() - probedAt} ms later`,
    );
    assert.equal(primary, 'up', 'the probe sees the primary again');

    await assertClientsConverged(s, 0);
  } finally {
    await s.close();
    // Deleting the cluster takes the database with it (and works whether or not it is up).
    await own.stop();
  }
});
