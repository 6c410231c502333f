// The read replica (DATABASE_REPLICA_URL, server/src/db): a streaming standby of the primary,
// reached through a fault proxy. Fallback snapshots are read from it while it answers; killed in
// the middle of one, the request is answered by the primary instead, with the primary's rows; once
// it is back and its breaker has reset, fallback reads return to it. A table it has not replayed
// yet is read from the primary. Initial snapshots of live shapes use it only when it has replayed
// everything replication has routed, and, for a table's first shape, the table joining the
// publication (rows committed before that are never sent by replication): a replica that is
// behind leaves them to the primary. An official client and a raw follower follow the table
// throughout, while a writer commits, and end equal to Postgres without a refetch.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Row } from '@electric-sql/client';
import {
  proxyTargetOf,
  startFaultProxy,
  startPostgres,
  startStandby,
  type FaultProxy,
  type StandbyCluster,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import {
  assertFallbackReply,
  assertFallbackSnapshot,
  fallbackReplyRows,
  fetchStatus,
  waitForStatus,
} from '../support/fallback-checks.js';
import {
  assertClientsConverged,
  assertLiveAndFollowing,
  followItems,
  itemsDatabase,
  ITEMS,
  type ItemsScenario,
} from '../support/items-scenario.js';
import { rawRequest, RawFollower, type RawReply } from '../support/raw-shape.js';
import { metric } from '../support/metrics.js';
import { assertMatchesPostgres } from '../support/shape-oracle.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Query attempts per database and outcome, from `sluice_db_attempts_total`. */
interface Attempts {
  primaryOk: number;
  replicaOk: number;
  replicaFailed: number;
}

async function attempts(baseUrl: string): Promise<Attempts> {
  const count = (database: string, outcome: string) =>
    metric(baseUrl, 'sluice_db_attempts_total', [`database="${database}"`, `outcome="${outcome}"`]);
  return {
    primaryOk: await count('primary', 'ok'),
    replicaOk: await count('replica', 'ok'),
    replicaFailed: await count('replica', 'failed'),
  };
}

function delta(before: Attempts, after: Attempts): Attempts {
  return {
    primaryOk: after.primaryOk - before.primaryOk,
    replicaOk: after.replicaOk - before.replicaOk,
    replicaFailed: after.replicaFailed - before.replicaFailed,
  };
}

/** Stops WAL replay on the standby and waits until it has really stopped. */
async function pauseReplay(standby: StandbyCluster): Promise<void> {
  await standby.query('SELECT pg_wal_replay_pause()');
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { rows } = await standby.query<{ state: string }>(
      'SELECT pg_get_wal_replay_pause_state() AS state',
    );
    if (rows[0]?.state === 'paused') return;
    assert.ok(Date.now() < deadline, `replay never paused: ${rows[0]?.state}`);
    await sleep(20);
  }
}

/** Polls until `check` holds, failing with `what` after `timeoutMs`. */
async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

const itemKey = (id: number) => `"public"."items"/"${id}"`;
const ids = (rows: Row[]) => new Set(rows.map((row) => Number(row.id)));

/** The fallback snapshot's rows of the whole table, from one `offset=-1` request. */
async function fallbackIds(baseUrl: string): Promise<{ reply: RawReply; ids: Set<number> }> {
  const reply = await rawRequest(baseUrl, { ...ITEMS, offset: '-1' });
  return { reply, ids: ids(fallbackReplyRows(reply).rows) };
}

/** Rejects if `promise` has not settled after `ms`: a bound on "did not hang". */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// The steps build on each other (replica up, killed, back; then live mode), so they run in order.
describe('read replica: replica-first reads, and the primary when the replica cannot answer', () => {
  let pg: TestPostgres | undefined;
  let db: TestDatabase | undefined;
  let standby: StandbyCluster | undefined;
  /** Sluice's replica connections (delay mode slows them down). */
  let replicaProxy: FaultProxy | undefined;
  /** Sluice's replication connection (reset mode forces fallback). */
  let replicationProxy: FaultProxy | undefined;
  let scenario: ItemsScenario | undefined;
  /** The test database as the standby shows it (SELECTs there: what the replica can answer). */
  let onReplica: TestDatabase;

  const running = () => {
    assert.ok(pg && db && standby && replicaProxy && replicationProxy && scenario, 'set up');
    return {
      db,
      standby,
      replicaProxy,
      replicationProxy,
      s: scenario,
      base: scenario.sluice.baseUrl,
    };
  };

  before(async () => {
    pg = await startPostgres();
    assert.ok(pg.owned && pg.cluster, 'needs a harness-owned Postgres (unset TEST_DATABASE_URL)');
    const database = (db = await itemsDatabase(pg));
    const replica = (standby = await startStandby(pg.cluster, { name: 'replica' }));
    const replicaUrl = replica.urlFor(database.name);
    onReplica = {
      ...database,
      url: replicaUrl,
      query: (sql, params) => replica.query(sql, params, database.name),
    };
    replicaProxy = await startFaultProxy({ host: standby.host, port: standby.port });
    replicationProxy = await startFaultProxy(proxyTargetOf(db.url));
    scenario = await followItems(db, {
      databaseReplicaUrl: replicaProxy.url(replicaUrl),
      replicationDatabaseUrl: replicationProxy.url(db.url),
      // Every fallback request runs its own query (no cache window to hide which database).
      fallbackMaxAgeS: 0,
      dbReplicaAttempts: 2,
      // Both replica tries failing open its breaker; it lets a trial through after a second.
      dbCircuitFailureThreshold: 2,
      dbCircuitResetMs: 1_000,
      dbRetryIntervalMs: 50,
      // Step e slows replication down by seconds; it must not count as a dead stream.
      replicationLivenessTimeoutMs: 30_000,
    });
  });

  after(async () => {
    // Each step runs whatever failed before it: nothing may be left behind.
    const steps: (() => Promise<unknown> | undefined)[] = [
      () => scenario?.close(),
      () => replicationProxy?.close(),
      () => replicaProxy?.close(),
      // The standby first: its destroy() drops its physical slot on the primary.
      () => standby?.destroy(),
      () => db?.drop(),
      () => pg?.stop(),
    ];
    for (const step of steps) await step()?.catch((error: unknown) => console.error(error));
  });

  it('a. fallback snapshots are read from the replica', async (t) => {
    const { db, standby, replicationProxy, s, base } = running();
    await assertLiveAndFollowing(s);
    assert.equal((await fetchStatus(base)).database.replica, 'up');

    // Replication fails, the database answers: fallback.
    replicationProxy.setMode('reset');
    await waitForStatus(base, 'fallback', 15_000);

    // The replica stops replaying: a row committed on the primary now is not on it.
    await pauseReplay(standby);
    const before = await attempts(base);
    const marker = 900_001;
    await db.query('INSERT INTO items VALUES ($1, 1)', [marker]);

    const { reply, ids: served } = await fallbackIds(base);
    assert.ok(!served.has(marker), 'the fallback snapshot lacks the row the replica has not got');
    // Exactly what the (frozen) replica holds, although the writer keeps committing meanwhile.
    await assertFallbackReply(onReplica, reply, ITEMS);
    const { rows } = await db.query('SELECT 1 FROM items WHERE id = $1', [marker]);
    assert.equal(rows.length, 1, 'the primary has the row');

    const status = await fetchStatus(base);
    assert.equal(status.status, 'fallback');
    assert.equal(status.database.replica, 'up');
    assert.equal(status.database.primary, 'up');
    const grew = delta(before, await attempts(base));
    t.diagnostic(`replica attempts during the snapshot: ${JSON.stringify(grew)}`);
    assert.ok(grew.replicaOk >= 1, 'a replica attempt succeeded');
    assert.equal(grew.replicaFailed, 0, 'no replica attempt failed');

    // A table the replica has not replayed yet: the primary answers for it (not a 400 saying
    // that the table does not exist).
    await db.query(
      'CREATE TABLE fresh (id int PRIMARY KEY, v int); INSERT INTO fresh SELECT g, g FROM generate_series(1, 5) g',
    );
    await assert.rejects(standby.query('SELECT 1 FROM fresh', [], db.name), { code: '42P01' });
    await assertFallbackSnapshot(db, base, { table: 'fresh' }, { table: 'fresh' });
  });

  it('b. the replica killed during a fallback snapshot: the primary answers it', async (t) => {
    const { db, standby, replicaProxy, s, base } = running();
    const before = await attempts(base);
    const retriesBefore = await metric(base, 'sluice_db_retries_total', ['database="replica"']);
    // The writer holds still, so the primary's rows can be compared exactly.
    await s.writer.pause();
    try {
      // A slow replica: the snapshot's transaction stays open on it long enough to be caught.
      replicaProxy.setMode('delay', { delayMs: 500 });
      const started = Date.now();
      const pending = rawRequest(base, { ...ITEMS, offset: '-1' });
      // Awaited below; if a wait fails first, its failure must not go unhandled.
      void pending.catch(() => undefined);
      await waitUntil('the fallback snapshot to be in flight on the replica', async () => {
        const { rows } = await standby.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = $1 AND pid <> pg_backend_pid() AND state = 'idle in transaction'`,
          [db.name],
        );
        return (rows[0]?.n ?? 0) > 0;
      });
      const inFlightAfter = Date.now() - started;
      await standby.crash();

      const reply = await within(pending, 60_000, 'the fallback snapshot');
      t.diagnostic(
        `killed ${inFlightAfter} ms into the snapshot; answered ${Date.now() - started} ms after it started`,
      );
      // The primary's rows now, the row the replica never replayed included.
      await assertFallbackReply(db, reply, ITEMS);
      assert.ok(ids(fallbackReplyRows(reply).rows).has(900_001), 'the primary answered');
    } finally {
      replicaProxy.setMode('pass');
      s.writer.resume();
    }

    const grew = delta(before, await attempts(base));
    const retried =
      (await metric(base, 'sluice_db_retries_total', ['database="replica"'])) - retriesBefore;
    t.diagnostic(`attempts: ${JSON.stringify(grew)}, replica retries ${retried}`);
    assert.ok(grew.replicaFailed >= 1, 'the replica attempt in flight failed');
    assert.ok(retried >= 1, 'the replica was tried again before the primary');
    assert.ok(grew.primaryOk >= 1, 'the primary answered');

    const status = await fetchStatus(base);
    assert.equal(status.database.replica, 'down');
    assert.equal(status.database.primary, 'up');
    assert.equal(status.database.breaker, 'closed', "the primary's breaker is untouched");
    assert.ok(
      (await metric(base, 'sluice_db_breaker_transitions_total', [
        'database="replica"',
        'to="open"',
      ])) >= 1,
      "the replica's breaker opened",
    );
    // Still answered while the replica is down.
    const { ids: served } = await fallbackIds(base);
    assert.ok(served.has(900_001));
  });

  it('c. the replica back: after the breaker reset, fallback reads return to it', async (t) => {
    const { db, standby, s, base } = running();
    const closedBefore = await metric(base, 'sluice_db_breaker_transitions_total', [
      'database="replica"',
      'to="closed"',
    ]);
    await standby.start();
    await standby.waitForStreaming();
    // A restart leaves replay running; resuming is a no-op, and says what is meant.
    await standby.query('SELECT pg_wal_replay_resume()');
    await standby.waitForReplay();
    await pauseReplay(standby);
    const marker = 900_002;
    await db.query('INSERT INTO items VALUES ($1, 2)', [marker]);

    // Until the breaker lets a trial through, the primary answers (with the row).
    const started = Date.now();
    let fromPrimary = 0;
    let answer = await fallbackIds(base);
    while (answer.ids.has(marker)) {
      fromPrimary++;
      assert.ok(Date.now() - started < 30_000, 'fallback reads never returned to the replica');
      await sleep(100);
      answer = await fallbackIds(base);
    }
    t.diagnostic(
      `replica answered again ${Date.now() - started} ms after it was back (${fromPrimary} answers from the primary before)`,
    );
    assert.ok(answer.ids.has(900_001), 'the replica replayed what it missed while down');
    await assertFallbackReply(onReplica, answer.reply, ITEMS);

    const status = await fetchStatus(base);
    assert.equal(status.status, 'fallback');
    assert.equal(status.database.replica, 'up');
    const closed = await metric(base, 'sluice_db_breaker_transitions_total', [
      'database="replica"',
      'to="closed"',
    ]);
    assert.ok(closed > closedBefore, "the replica's breaker closed again");
    assert.equal(
      await metric(base, 'sluice_db_breaker_state', ['database="replica"', 'state="closed"']),
      1,
    );
    assert.ok(s.writer.committed > 0);
  });

  it('d. initial snapshots: the primary while the replica is behind, the replica once it caught up', async (t) => {
    const { db, standby, replicationProxy, s, base } = running();
    // Replay is still paused (c): the replica is behind everything written since.
    replicationProxy.setMode('pass');
    await waitForStatus(base, 'live', 30_000);

    // Rows the replica cannot have, routed by replication before the shapes below exist: only
    // the snapshot can give them to those shapes.
    await db.query('INSERT INTO items SELECT g, 7 FROM generate_series(700001, 700010) g');
    await waitUntil('replication to route the new rows', () => s.raw.rows.has(itemKey(700_010)));

    const behindSpec = { ...ITEMS, where: 'id > 700000 AND id < 800000' };
    let before = await attempts(base);
    const behind = new RawFollower(base, behindSpec);
    try {
      await assertMatchesPostgres(db, behindSpec, () => [...behind.rows.values()], 30_000);
      assert.equal(behind.rows.size, 10);
    } finally {
      await behind.close();
    }
    let grew = delta(before, await attempts(base));
    t.diagnostic(`new shape with the replica behind: ${JSON.stringify(grew)}`);
    assert.ok(grew.replicaFailed >= 1, 'the replica was asked, and was behind');
    assert.ok(grew.primaryOk >= 2, 'the primary planned the shape and took its snapshot');
    assert.equal((await fetchStatus(base)).database.replica, 'up', 'behind is not down');

    // Caught up: with the writer still, the replica replays everything routed so far. A new
    // shape's snapshot then goes to it. (WAL the primary writes on its own, between the wait and
    // the request, may put the replica a few bytes behind again: a fresh shape is tried then.)
    await standby.query('SELECT pg_wal_replay_resume()');
    await s.writer.pause();
    try {
      await assertMatchesPostgres(db, ITEMS, () => [...s.raw.rows.values()], 30_000);
      let taken = false;
      for (let attempt = 0; attempt < 5 && !taken; attempt++) {
        await standby.waitForReplay();
        const spec = { ...ITEMS, where: `id > 700000 AND id < ${800_001 + attempt}` };
        before = await attempts(base);
        const follower = new RawFollower(base, spec);
        try {
          await assertMatchesPostgres(db, spec, () => [...follower.rows.values()], 30_000);
        } finally {
          await follower.close();
        }
        grew = delta(before, await attempts(base));
        t.diagnostic(
          `new shape with the replica caught up (try ${attempt + 1}): ${JSON.stringify(grew)}`,
        );
        taken = grew.replicaOk >= 1 && grew.replicaFailed === 0 && grew.primaryOk === 1;
      }
      assert.ok(taken, 'the replica took a new shape snapshot once it had caught up');
    } finally {
      s.writer.resume();
    }
  });

  it("e. a table's first shape while replication lags the replica: the primary takes the snapshot", async (t) => {
    const { db, standby, replicationProxy, base } = running();
    // A table the replica has, in no shape yet, so not in the publication.
    await db.query('CREATE TABLE late (id int PRIMARY KEY, v int); INSERT INTO late VALUES (1, 1)');
    // Replication falls seconds behind (the writer keeps it busy meanwhile): what it has routed
    // stops advancing, and the replica, caught up past that position, stops there too.
    replicationProxy.setMode('delay', { delayMs: 5_000 });
    await sleep(500);
    await standby.waitForReplay();
    await pauseReplay(standby);
    // Committed before the table joins the publication: replication will never send these rows,
    // and the replica has replayed everything replication routed but not them.
    await db.query('INSERT INTO late SELECT g, g FROM generate_series(2, 20) g');

    const spec = { table: 'late' };
    const before = await attempts(base);
    const follower = new RawFollower(base, spec);
    try {
      await waitUntil('the snapshot', () => follower.upToDates > 0);
      replicationProxy.setMode('pass');
      await assertMatchesPostgres(db, spec, () => [...follower.rows.values()], 30_000);
      assert.equal(follower.rows.size, 20);
    } finally {
      replicationProxy.setMode('pass');
      await follower.close();
    }
    const grew = delta(before, await attempts(base));
    t.diagnostic(`first shape of a table, replication behind the replica: ${JSON.stringify(grew)}`);
    assert.ok(
      grew.replicaFailed >= 1,
      'the replica was asked, and had not replayed the table joining the publication',
    );
    await standby.query('SELECT pg_wal_replay_resume()');
    await standby.waitForReplay();
  });

  it('f. everything restored: the clients that followed throughout equal Postgres', async () => {
    const { s, base } = running();
    const status = await fetchStatus(base);
    assert.equal(status.database.replica, 'up');
    assert.equal(status.database.primary, 'up');
    await assertClientsConverged(s, 0);
  });
});
