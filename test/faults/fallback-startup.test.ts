// Fallback mode when replication cannot start at all (docs/protocol.md §7): with wal_level=replica, or
// with a role lacking the REPLICATION privilege, the server leaves `starting` for `fallback` (not
// stuck, not down), says why with the SQLSTATE, serves shapes straight from Postgres, and once the
// operator fixes the cause it goes live by itself. Clients that followed during the outage sit on
// fallback handles: writes during the outage move them to fresh fallback rows (a 409 each time
// their rows may have changed), and once live each is moved to the live shape by one 409 and ends
// equal to Postgres.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { startPostgres, type TestDatabase } from '@sluice/harness';
import { CountingFollower } from '../support/counting-follower.js';
import { assertFallbackSnapshot, fetchStatus, waitForStatus } from '../support/fallback-checks.js';
import { RawFollower } from '../support/raw-shape.js';
import { assertMatchesPostgres } from '../support/shape-oracle.js';
import { startSluice, type RunningSluice } from '../support/sluice-server.js';

const SHAPE = { table: 'items' } as const;

async function metricsText(baseUrl: string): Promise<string> {
  const response = await fetch(`${baseUrl}/metrics`);
  assert.equal(response.status, 200);
  return response.text();
}

/** Rows of `items` inserted, updated and deleted in a few transactions. */
async function writeSome(db: TestDatabase, fromId: number): Promise<void> {
  await db.query('INSERT INTO items SELECT g, g FROM generate_series($1::int, $1::int + 19) g', [
    fromId,
  ]);
  await db.query('UPDATE items SET v = v + 1000 WHERE id % 7 = 0');
  await db.query('DELETE FROM items WHERE id % 11 = 0');
  await db.query('INSERT INTO items VALUES ($1, -1)', [fromId + 100]);
}

/**
 * While replication has never run: the status says fallback with `code`, the database is up,
 * the fallback snapshot equals SELECT, and both followers got every row (on fallback handles).
 */
async function checkStartupFallback(
  db: TestDatabase,
  sluice: RunningSluice,
  official: CountingFollower,
  raw: RawFollower,
  code: string,
  message: RegExp,
): Promise<void> {
  const { body } = await waitForStatus(sluice.baseUrl, 'fallback', 20_000);
  // Health counts fallback as serving.
  assert.equal((await fetch(`${sluice.baseUrl}/v1/health`)).status, 200);
  assert.equal(body.replication_available, false);
  assert.ok(
    ['backoff', 'connecting'].includes(body.replication.state),
    `replication state ${body.replication.state}`,
  );
  assert.equal(body.replication.last_error?.code, code, JSON.stringify(body.replication));
  assert.match(body.replication.last_error?.message ?? '', message);
  assert.equal(body.database.primary, 'up');
  assert.equal(body.shapes.state, 'read_only');

  const handle = await assertFallbackSnapshot(db, sluice.baseUrl, SHAPE, SHAPE);
  assert.match(handle, /-fallback-/);

  await assertMatchesPostgres(db, SHAPE, () => [...official.rows.values()], 30_000);
  await assertMatchesPostgres(db, SHAPE, () => [...raw.rows.values()], 30_000);
  // Still the outage. (Any transaction ending meanwhile, an autovacuum's ANALYZE included, may
  // already have moved the followers to fresh fallback rows: not counted here.)
  assert.equal((await fetchStatus(sluice.baseUrl)).status, 'fallback');

  const metrics = await metricsText(sluice.baseUrl);
  assert.match(metrics, /sluice_state_transitions_total\{from="starting",to="fallback"\} 1\n/);
  assert.match(metrics, /sluice_state\{state="fallback"\} 1\n/);
  assert.doesNotMatch(metrics, /sluice_state_transitions_total\{from="starting",to="live"\}/);
}

/** 409s each follower has had so far. */
interface Refetches {
  official: number;
  raw: number;
}

/**
 * Writes during the outage: both followers (on fallback handles) are moved to fresh fallback rows
 * and equal Postgres again while replication is still down. Returns their 409s so far.
 */
async function checkWritesDuringOutage(
  db: TestDatabase,
  sluice: RunningSluice,
  official: CountingFollower,
  raw: RawFollower,
): Promise<Refetches> {
  await writeSome(db, 1_000);
  await assertMatchesPostgres(db, SHAPE, () => [...official.rows.values()], 30_000);
  await assertMatchesPostgres(db, SHAPE, () => [...raw.rows.values()], 30_000);
  assert.equal((await fetchStatus(sluice.baseUrl)).status, 'fallback');
  assert.ok(official.mustRefetches >= 1, 'official client: moved to fresh fallback rows');
  assert.ok(raw.mustRefetches >= 1, 'raw follower: moved to fresh fallback rows');
  return { official: official.mustRefetches, raw: raw.mustRefetches };
}

/**
 * After recovery: more writes, both followers equal to Postgres, each moved to the live shape by
 * one 409 (the fix itself may be a transaction that moves them to fresh fallback rows once more).
 */
async function checkRecovered(
  db: TestDatabase,
  sluice: RunningSluice,
  official: CountingFollower,
  raw: RawFollower,
  during: Refetches,
): Promise<void> {
  await writeSome(db, 2_000);
  await assertMatchesPostgres(db, SHAPE, () => [...official.rows.values()], 45_000);
  await assertMatchesPostgres(db, SHAPE, () => [...raw.rows.values()], 45_000);
  await writeSome(db, 3_000);
  await assertMatchesPostgres(db, SHAPE, () => [...official.rows.values()], 30_000);
  await assertMatchesPostgres(db, SHAPE, () => [...raw.rows.values()], 30_000);

  const officialMoves = official.mustRefetches - during.official;
  assert.ok(officialMoves >= 1 && officialMoves <= 2, `official client: ${officialMoves} 409s`);
  assert.deepEqual(official.duplicates(), [], 'official client: no change twice');
  assert.deepEqual(official.errors, []);
  const rawMoves = raw.mustRefetches - during.raw;
  assert.ok(rawMoves >= 1 && rawMoves <= 2, `raw follower: ${rawMoves} 409s`);
  assert.deepEqual(raw.audit.anomalies, [], 'raw follower: every change once');
  assert.equal(raw.error, undefined);

  const status = await fetchStatus(sluice.baseUrl);
  assert.equal(status.status, 'live');
  assert.equal(status.replication.state, 'streaming');
  // Live exactly once. A Postgres restart may pass through `unavailable`, and the stream may
  // come up before the probe sees the database again, so the state it came from may vary.
  const metrics = await metricsText(sluice.baseUrl);
  const intoLive = [
    ...metrics.matchAll(/^sluice_state_transitions_total\{from="\w+",to="live"\} (\d+)$/gm),
  ];
  assert.equal(
    intoLive.reduce((sum, match) => sum + Number(match[1]), 0),
    1,
    `one transition to live:\n${intoLive.map((match) => match[0]).join('\n')}`,
  );
  assert.match(metrics, /sluice_state\{state="live"\} 1\n/);
}

test('wal_level=replica at start: fallback (55000), live after the fix, one 409 per client', async () => {
  const pg = await startPostgres({ settings: { wal_level: 'replica' } });
  let sluice: RunningSluice | undefined;
  let official: CountingFollower | undefined;
  let raw: RawFollower | undefined;
  try {
    const db = await pg.createDatabase();
    await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
    await db.query('INSERT INTO items SELECT g, g FROM generate_series(1, 60) g');
    sluice = await startSluice(db, { longPollTimeoutMs: 1_000 });
    official = new CountingFollower(`${sluice.baseUrl}/v1/shape`, SHAPE);
    raw = new RawFollower(sluice.baseUrl, SHAPE);
    await checkStartupFallback(db, sluice, official, raw, '55000', /wal_level/);
    // The status stays fallback through the retries; the stream never came up.
    const again = await fetchStatus(sluice.baseUrl);
    assert.equal(again.status, 'fallback');
    assert.match(again.replication.last_error?.message ?? '', /wal_level is "replica"/);

    // Written while replication cannot run: the live shape's snapshot must include it.
    const during = await checkWritesDuringOutage(db, sluice, official, raw);
    await pg.query("ALTER SYSTEM SET wal_level = 'logical'");
    await pg.restart();
    const { rows } = await pg.query<{ wal_level: string }>('SHOW wal_level');
    assert.equal(rows[0]?.wal_level, 'logical');
    await waitForStatus(sluice.baseUrl, 'live', 60_000);

    await checkRecovered(db, sluice, official, raw, during);
    official.close();
    await raw.close();
    await sluice.close();
    sluice = undefined;
    await db.drop();
  } finally {
    official?.close();
    await raw?.close();
    await sluice?.close();
    await pg.stop();
  }
});

test('role without REPLICATION: fallback (42501), live after ALTER ROLE, one 409 per client', async () => {
  const pg = await startPostgres();
  const role = `sluice_noreplication_${randomBytes(4).toString('hex')}`;
  let sluice: RunningSluice | undefined;
  let official: CountingFollower | undefined;
  let raw: RawFollower | undefined;
  try {
    const db = await pg.createDatabase();
    await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
    await db.query('INSERT INTO items SELECT g, g FROM generate_series(1, 60) g');
    // Least privilege: the role may only read the table. The publication and the replica
    // identity are set up by a superuser beforehand, as an operator would.
    await pg.query(`CREATE ROLE ${role} LOGIN NOREPLICATION`);
    await db.query(`GRANT SELECT ON items TO ${role}`);
    await db.query('ALTER TABLE items REPLICA IDENTITY FULL');
    await db.query(`CREATE PUBLICATION ${db.publicationName} FOR TABLE items`);
    const url = new URL(db.url);
    url.username = role;

    sluice = await startSluice(db, {
      databaseUrl: url.toString(),
      replicationRetryMinMs: 500,
      replicationRetryMaxMs: 2_000,
      longPollTimeoutMs: 1_000,
    });
    official = new CountingFollower(`${sluice.baseUrl}/v1/shape`, SHAPE);
    raw = new RawFollower(sluice.baseUrl, SHAPE);
    await checkStartupFallback(
      db,
      sluice,
      official,
      raw,
      '42501',
      /REPLICATION privilege.*permission denied to start WAL sender/s,
    );

    const during = await checkWritesDuringOutage(db, sluice, official, raw);
    await pg.query(`ALTER ROLE ${role} REPLICATION`);
    // The next attempt (at most 2 s × 1.25 away) succeeds.
    const { elapsedMs } = await waitForStatus(sluice.baseUrl, 'live', 30_000);
    assert.ok(elapsedMs < 15_000, `live again ${elapsedMs} ms after ALTER ROLE`);

    await checkRecovered(db, sluice, official, raw, during);
    const metrics = await metricsText(sluice.baseUrl);
    assert.match(metrics, /sluice_state_transitions_total\{from="fallback",to="live"\} 1\n/);
    const { rows } = await db.query<{ usename: string }>(
      'SELECT usename::text FROM pg_stat_replication',
    );
    assert.deepEqual(
      rows.map((r) => r.usename),
      [role],
      'replication runs as the unprivileged role',
    );
    official.close();
    await raw.close();
    await sluice.close();
    sluice = undefined;
    await db.drop();
    await pg.query(`DROP ROLE ${role}`);
  } finally {
    official?.close();
    await raw?.close();
    await sluice?.close();
    await pg.stop();
  }
});
