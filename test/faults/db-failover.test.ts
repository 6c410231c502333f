// A primary failover under a moving address: Sluice, its replication stream and a writer all use
// one address (a fault proxy, standing in for a DNS name or a virtual IP) in front of the primary;
// a streaming standby follows the primary. The primary dies, the standby is promoted and the
// address moves to it. Sluice recovers by itself: the new primary is a copy of the whole cluster
// (the database and the publication are there) but has no logical slot, so replication makes a
// new one and every shape starts over; clients get one 409 each, refetch, and end equal to
// SELECT on the new primary while the writer goes on writing there.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import {
  dropSlotsOf,
  proxyTargetOf,
  startFaultProxy,
  startPostgres,
  startStandby,
  type FaultProxy,
  type StandbyCluster,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import { fetchStatus, waitForStatus } from '../support/fallback-checks.js';
import {
  assertClientsConverged,
  assertLiveAndFollowing,
  followItems,
  itemsDatabase,
  ITEMS,
  type ItemsScenario,
} from '../support/items-scenario.js';
import { isRotation, rawRequest, readToEnd } from '../support/raw-shape.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The cluster's system identifier and its current timeline (from the name of its WAL file). */
const SYSTEM_SQL = `SELECT system_identifier::text AS id,
         ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int AS timeline
    FROM pg_control_system()`;

/**
 * The test database as everyone but the test harness reaches it: through the proxy, so it is
 * whichever server the proxy points at. Queries use a small pool (the writer commits often).
 */
function throughProxy(
  db: TestDatabase,
  proxy: FaultProxy,
): TestDatabase & { end(): Promise<void> } {
  const url = proxy.url(db.url);
  const pool = new pg.Pool({ connectionString: url, max: 2, connectionTimeoutMillis: 2_000 });
  // Connections reset by the failover fail their query; idle ones just go.
  pool.on('error', () => undefined);
  return {
    name: db.name,
    url,
    slotName: db.slotName,
    publicationName: db.publicationName,
    query: (sql, params) => pool.query(sql, params),
    drop: () => Promise.reject(new Error('drop the database on a cluster, not through the proxy')),
    end: () => pool.end(),
  };
}

test('primary failover: Sluice makes a new slot on the promoted standby, clients refetch once and converge', async (t: TestContext) => {
  let postgres: TestPostgres | undefined;
  let db: TestDatabase | undefined;
  let standby: StandbyCluster | undefined;
  let proxy: FaultProxy | undefined;
  let shared: (TestDatabase & { end(): Promise<void> }) | undefined;
  let s: ItemsScenario | undefined;
  let promoted = false;
  try {
    postgres = await startPostgres();
    const cluster = postgres.cluster;
    assert.ok(
      postgres.owned && cluster,
      'needs a harness-owned Postgres (unset TEST_DATABASE_URL)',
    );
    db = await itemsDatabase(postgres);
    standby = await startStandby(cluster, { name: 'failover' });
    proxy = await startFaultProxy(proxyTargetOf(db.url));
    shared = throughProxy(db, proxy);
    // DATABASE_URL through the proxy; replication uses it too (no replicationDatabaseUrl).
    s = await followItems(shared, {
      dbCircuitResetMs: 2_000,
      dbConnectTimeoutMs: 2_000,
      dbRetryIntervalMs: 50,
    });
    const base = s.sluice.baseUrl;
    await assertLiveAndFollowing(s);
    const before = await readToEnd(base, ITEMS);
    const systemBefore = await cluster.query<{ id: string; timeline: number }>(SYSTEM_SQL);

    // The primary dies; what it committed but had not sent yet is lost with it.
    await cluster.crash();
    const crashedAt = Date.now();
    // Sluice notices before anything is done about it (a failover takes its time).
    const { body: down } = await waitForStatus(base, ['unavailable', 'fallback'], 30_000);
    t.diagnostic(`failover: ${down.status} ${Date.now() - crashedAt} ms after the crash`);
    await sleep(1_000);
    await standby.promote();
    promoted = true;
    proxy.retarget({ host: standby.host, port: standby.port });
    t.diagnostic(
      `failover: standby promoted and the address moved ${Date.now() - crashedAt} ms after the crash`,
    );

    const { body, elapsedMs } = await waitForStatus(base, 'live', 60_000);
    t.diagnostic(`failover: live again ${elapsedMs} ms after the address moved`);
    assert.equal(body.replication.state, 'streaming');
    // The last thing replication reported: its slot was missing, so it made a new one.
    assert.equal(body.replication.last_error?.code, '42704', JSON.stringify(body.replication));

    // The new primary: same system, next timeline, the database and publication copied, and the
    // slot made by Sluice just now (there was none: slots are not copied to a standby).
    const systemAfter = await standby.query<{ id: string; timeline: number }>(SYSTEM_SQL);
    assert.equal(systemAfter.rows[0]?.id, systemBefore.rows[0]?.id, 'same system');
    assert.ok(
      (systemAfter.rows[0]?.timeline ?? 0) > (systemBefore.rows[0]?.timeline ?? 0),
      'a new timeline',
    );
    const slots = await standby.query<{ plugin: string; active: boolean }>(
      'SELECT plugin, active FROM pg_replication_slots WHERE slot_name = $1 AND database = $2',
      [db.slotName, db.name],
    );
    assert.deepEqual(slots.rows, [{ plugin: 'pgoutput', active: true }], 'a new slot, streaming');
    const publication = await standby.query(
      'SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND tablename = $2',
      [db.publicationName, 'items'],
      db.name,
    );
    assert.equal(publication.rows.length, 1, 'the publication came with the copy');

    // The shape started over: the old handle is sent to the new one.
    const after = await readToEnd(base, ITEMS);
    assert.notEqual(after.handle, before.handle, 'the shape was rotated');
    const old = await rawRequest(base, { ...ITEMS, ...before });
    assert.ok(isRotation(old, before.handle), `old handle: ${old.status} ${old.text}`);
    assert.equal(old.headers.get('electric-handle'), after.handle);
    const status = await fetchStatus(base);
    assert.equal(status.database.primary, 'up');

    // Writes go on, on the new primary; both clients refetched once and equal SELECT there.
    await assertClientsConverged(s, 1);
    const written = await standby.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM items WHERE id >= 1000',
      [],
      db.name,
    );
    t.diagnostic(
      `failover: ${s.writer.committed} writes, ${written.rows[0]?.n} on the new primary`,
    );
  } finally {
    // Whatever failed, nothing is left: every step runs, errors only logged.
    const steps: (() => Promise<unknown> | undefined)[] = [
      () => s?.close(),
      () => shared?.end(),
      () => proxy?.close(),
    ];
    if (promoted && db && standby) {
      // The new primary holds Sluice's new slot: slots go before their database.
      const { name } = db;
      const newPrimary = standby;
      steps.push(
        () => dropSlotsOf(newPrimary, name),
        () => newPrimary.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
      );
    }
    // Its destroy() also drops its physical slot on the old primary, if that still runs.
    steps.push(() => standby?.destroy());
    if (!promoted && postgres?.cluster?.running) steps.push(() => db?.drop());
    steps.push(() => postgres?.stop());
    for (const step of steps) await step()?.catch((error: unknown) => console.error(error));
  }
});
