// The query executor under database faults (server/src/db): Postgres stopped while requests
// arrive (the circuit breaker opens, requests fail fast, it half-opens and closes once Postgres is
// back), a black-holed database (queries give up within the configured bound), and pooled
// connections that died silently (validated and discarded before use).
import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import {
  proxyTargetOf,
  startFaultProxy,
  startPostgres,
  type FaultProxy,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import { fetchStatus } from '../support/fallback-checks.js';
import {
  assertClientsConverged,
  assertLiveAndFollowing,
  followItems,
  itemsDatabase,
  ITEMS,
} from '../support/items-scenario.js';
import { rawRequest, RawFollower } from '../support/raw-shape.js';
import { metric } from '../support/metrics.js';
import { assertMatchesPostgres } from '../support/shape-oracle.js';
import { startSluice, waitUntilLive, type RunningSluice } from '../support/sluice-server.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

interface Timed {
  status: number;
  code: string | undefined;
  retryAfter: string | null;
  ms: number;
}

/** One `offset=-1` request for the items with `id > above`, timed. */
async function timedInitial(baseUrl: string, above: number): Promise<Timed> {
  const started = Date.now();
  const response = await rawRequest(baseUrl, { ...ITEMS, where: `id > ${above}`, offset: '-1' });
  const ms = Date.now() - started;
  let code: string | undefined;
  try {
    code = (JSON.parse(response.text) as { code?: string }).code;
  } catch {
    code = undefined;
  }
  return { status: response.status, code, retryAfter: response.headers.get('retry-after'), ms };
}

/**
 * A Sluice whose queries go through a fault proxy while replication goes straight to Postgres,
 * so the server stays live whatever the proxy does.
 */
async function queriesThroughProxy(
  db: TestDatabase,
  overrides: Parameters<typeof startSluice>[1],
): Promise<{ proxy: FaultProxy; sluice: RunningSluice; close(): Promise<void> }> {
  const proxy = await startFaultProxy(proxyTargetOf(db.url));
  const sluice = await startSluice(db, {
    databaseUrl: proxy.url(db.url),
    replicationDatabaseUrl: db.url,
    ...overrides,
  });
  return {
    proxy,
    sluice,
    async close() {
      await sluice.close();
      await proxy.close();
    },
  };
}

/** A raw follower of the items matching `where` ends equal to SELECT. */
async function assertFollowerMatches(baseUrl: string, db: TestDatabase, where: string) {
  const follower = new RawFollower(baseUrl, { ...ITEMS, where });
  try {
    await assertMatchesPostgres(db, { ...ITEMS, where }, () => [...follower.rows.values()]);
  } finally {
    await follower.close();
  }
}

test('Postgres stopped while requests arrive: the breaker opens, 503s come at once, it closes after Postgres returns', async (t: TestContext) => {
  const own = await startPostgres();
  if (!own.owned || !own.cluster) {
    await own.stop();
    assert.fail('needs a harness-owned Postgres (unset TEST_DATABASE_URL)');
  }
  const cluster = own.cluster;
  const connectTimeoutMs = 2_000;
  const db = await itemsDatabase(own);
  const s = await followItems(db, {
    dbCircuitFailureThreshold: 3,
    dbCircuitResetMs: 1_500,
    dbConnectTimeoutMs: connectTimeoutMs,
    dbMaxRetries: 2,
    dbRetryIntervalMs: 50,
  });
  try {
    await assertLiveAndFollowing(s);
    const base = s.sluice.baseUrl;
    assert.equal((await fetchStatus(base)).database.breaker, 'closed');

    await cluster.shutdown('fast');
    // Bursts of new shapes for four seconds: each needs a query, and none may wait long.
    const answers: Timed[] = [];
    let sawOpen = false;
    const outageStarted = Date.now();
    for (let burst = 0; Date.now() - outageStarted < 4_000; burst++) {
      const shapes = [1, 2, 3, 4, 5].map((n) => timedInitial(base, burst * 10 + n));
      answers.push(...(await Promise.all(shapes)));
      if ((await fetchStatus(base)).database.breaker === 'open') sawOpen = true;
      await sleep(100);
    }
    const slowest = Math.max(...answers.map((a) => a.ms));
    const open = answers.filter((a) => a.code === 'SLUICE_ERR_DB_CIRCUIT_OPEN');
    t.diagnostic(
      `breaker: ${answers.length} requests while Postgres was down, ${open.length} refused by the open breaker; slowest ${slowest} ms (connect timeout ${connectTimeoutMs} ms)`,
    );
    for (const answer of answers) {
      assert.equal(answer.status, 503, JSON.stringify(answer));
      assert.ok(answer.retryAfter, 'every 503 says when to retry');
      assert.ok(
        answer.ms < connectTimeoutMs,
        `no request waits past the connect timeout: ${answer.ms} ms`,
      );
    }
    assert.ok(open.length > 0, 'the breaker opened and refused requests at once');
    for (const answer of open) assert.equal(answer.retryAfter, '2', 'retry-after: the reset time');
    assert.ok(sawOpen, '/v1/status showed database.breaker = open');
    assert.equal(
      await metric(base, 'sluice_db_breaker_state', ['database="primary"', 'state="open"']),
      1,
    );

    await own.start();
    // A trial query goes through once the reset time has passed; its success closes the breaker.
    const recovered = Date.now();
    let answer = await timedInitial(base, 1_000);
    while (answer.status !== 200 && Date.now() - recovered < 30_000) {
      await sleep(200);
      answer = await timedInitial(base, 1_000);
    }
    assert.equal(answer.status, 200, `a new shape is served again: ${JSON.stringify(answer)}`);
    t.diagnostic(`breaker: a new shape served ${Date.now() - recovered} ms after Postgres started`);
    assert.equal((await fetchStatus(base)).database.breaker, 'closed');
    const halfOpened = ['database="primary"', 'to="half_open"'];
    assert.ok((await metric(base, 'sluice_db_breaker_transitions_total', halfOpened)) >= 1);
    const closed = ['database="primary"', 'to="closed"'];
    assert.ok((await metric(base, 'sluice_db_breaker_transitions_total', closed)) >= 1);

    await waitUntilLive(base);
    await assertClientsConverged(s, 0);
  } finally {
    await s.close();
    await own.stop();
  }
});

test('a black-holed database: a query gives up within the configured bound instead of hanging', async (t: TestContext) => {
  const db = await itemsDatabase(pg);
  const statementTimeoutMs = 1_000;
  const connectTimeoutMs = 1_000;
  const setup = await queriesThroughProxy(db, {
    dbStatementTimeoutMs: statementTimeoutMs,
    dbConnectTimeoutMs: connectTimeoutMs,
    dbMaxRetries: 1,
    dbRetryIntervalMs: 50,
  });
  const { proxy, sluice } = setup;
  try {
    await waitUntilLive(sluice.baseUrl);
    assert.equal((await timedInitial(sluice.baseUrl, 10)).status, 200);

    proxy.setMode('blackhole');
    // One try on the pooled connection (silent for the statement timeout plus 2 s, then closed),
    // one retry whose connection never completes (the connect timeout), a short backoff.
    const boundMs = statementTimeoutMs + 2_000 + connectTimeoutMs + 100;
    const answer = await timedInitial(sluice.baseUrl, 20);
    t.diagnostic(`blackhole: 503 after ${answer.ms} ms (bound ${boundMs} ms)`);
    assert.equal(answer.status, 503, JSON.stringify(answer));
    assert.equal(answer.code, 'SLUICE_ERR_DB_UNREACHABLE');
    assert.ok(answer.retryAfter);
    // Scheduling slack on a loaded 2-core machine; a hang would take minutes.
    assert.ok(answer.ms < boundMs + 3_000, `gave up in ${answer.ms} ms`);
    assert.ok(
      (await metric(sluice.baseUrl, 'sluice_db_retries_total', ['database="primary"'])) >= 1,
      'the lost connection was retried',
    );

    proxy.setMode('pass');
    let after = await timedInitial(sluice.baseUrl, 20);
    for (let i = 0; after.status !== 200 && i < 50; i++) {
      await sleep(200);
      after = await timedInitial(sluice.baseUrl, 20);
    }
    assert.equal(after.status, 200, 'served once the network is back');
    await db.query('INSERT INTO items VALUES (500, 1)');
    await assertFollowerMatches(sluice.baseUrl, db, 'id > 20');
  } finally {
    await setup.close();
    await db.drop();
  }
});

test('pooled connections that died silently are validated and discarded, never used', async (t: TestContext) => {
  const db = await itemsDatabase(pg);
  const setup = await queriesThroughProxy(db, {
    dbIdleValidationMs: 300,
    dbConnectTimeoutMs: 1_000,
    // Without validation, a query on a dead connection would hang this long before failing.
    dbStatementTimeoutMs: 60_000,
  });
  const { proxy, sluice } = setup;
  try {
    await waitUntilLive(sluice.baseUrl);
    assert.equal((await timedInitial(sluice.baseUrl, 10)).status, 200);
    const failedBefore = await metric(sluice.baseUrl, 'sluice_db_attempts_total', [
      'database="primary"',
      'outcome="failed"',
    ]);
    await sleep(500);
    // The pool's idle connections now lead nowhere (a NAT forgot them); new ones work.
    proxy.blackholeCurrent();

    const answer = await timedInitial(sluice.baseUrl, 30);
    t.diagnostic(`validation: new shape served in ${answer.ms} ms with dead pooled connections`);
    assert.equal(answer.status, 200, JSON.stringify(answer));
    const stale = await metric(sluice.baseUrl, 'sluice_db_stale_connections_total', [
      'database="primary"',
    ]);
    assert.ok(stale >= 1, `stale connections discarded: ${stale}`);
    const failedAfter = await metric(sluice.baseUrl, 'sluice_db_attempts_total', [
      'database="primary"',
      'outcome="failed"',
    ]);
    assert.equal(failedAfter, failedBefore, 'no query ran on a dead connection');
    await assertFollowerMatches(sluice.baseUrl, db, 'id > 30');
  } finally {
    await setup.close();
    await db.drop();
  }
});
