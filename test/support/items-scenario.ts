// The setting most fallback fault tests share: a table `items`, a Sluice on it, a writer that
// keeps committing, and two clients following the whole table throughout (the official client
// and a raw HTTP follower), checked against Postgres before the fault and after it.
import assert from 'node:assert/strict';
import type { TestDatabase, TestPostgres } from '@sluice/harness';
import { CountingFollower } from './counting-follower.js';
import { assertFallbackSnapshot, fetchStatus, waitForStatus } from './fallback-checks.js';
import { RawFollower } from './raw-shape.js';
import { assertMatchesPostgres } from './shape-oracle.js';
import { startSluice, waitUntilLive, type RunningSluice } from './sluice-server.js';
import { Writer } from './table-oracle.js';

export const ITEMS = { table: 'items' } as const;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A new database with `items (id, v)` holding rows 1–50. */
export async function itemsDatabase(cluster: TestPostgres): Promise<TestDatabase> {
  const db = await cluster.createDatabase();
  await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
  await db.query('INSERT INTO items SELECT g, 0 FROM generate_series(1, 50) g');
  return db;
}

export interface ItemsScenario {
  db: TestDatabase;
  sluice: RunningSluice;
  official: CountingFollower;
  raw: RawFollower;
  writer: Writer;
  /** Stops the writer, the clients and the server (the database is the caller's). */
  close(): Promise<void>;
}

export async function followItems(
  db: TestDatabase,
  overrides: Parameters<typeof startSluice>[1] = {},
): Promise<ItemsScenario> {
  const sluice = await startSluice(db, { longPollTimeoutMs: 1_000, ...overrides });
  const official = new CountingFollower(`${sluice.baseUrl}/v1/shape`, ITEMS);
  const raw = new RawFollower(sluice.baseUrl, ITEMS);
  // Ids start past the seeded rows, so the writer's inserts never collide with them.
  const writer = new Writer(db, { pauseMs: 10 });
  writer.nextId = 1_000;
  return {
    db,
    sluice,
    official,
    raw,
    writer,
    async close() {
      await writer.stop();
      official.close();
      await raw.close();
      await sluice.close();
    },
  };
}

/** Both clients caught up with Postgres, the server streaming, changes flowing live. */
export async function assertLiveAndFollowing(s: ItemsScenario): Promise<void> {
  await waitUntilLive(s.sluice.baseUrl);
  await assertMatchesPostgres(s.db, ITEMS, () => [...s.official.rows.values()], 30_000);
  await assertMatchesPostgres(s.db, ITEMS, () => [...s.raw.rows.values()], 30_000);
  const { body } = await waitForStatus(s.sluice.baseUrl, 'live');
  assert.equal(body.replication.state, 'streaming');
  await sleep(1_000);
}

/** The fallback snapshot equals SELECT, with the writer held still around it. */
export async function assertSnapshotWithWriterPaused(s: ItemsScenario): Promise<string> {
  await s.writer.pause();
  try {
    return await assertFallbackSnapshot(s.db, s.sluice.baseUrl, ITEMS, ITEMS);
  } finally {
    s.writer.resume();
  }
}

/**
 * The end of every test: writes went on after recovery, then both clients equal Postgres (the
 * oracle) after exactly `refetches` 409s each, every change delivered once, no client error.
 */
export async function assertClientsConverged(s: ItemsScenario, refetches: number): Promise<void> {
  const before = s.writer.committed;
  await sleep(500);
  await s.writer.stop();
  assert.ok(s.writer.committed > before, 'writes continued after recovery');
  await assertMatchesPostgres(s.db, ITEMS, () => [...s.official.rows.values()], 30_000);
  await assertMatchesPostgres(s.db, ITEMS, () => [...s.raw.rows.values()], 30_000);
  assert.equal(s.official.mustRefetches, refetches, 'official client: 409s');
  assert.deepEqual(s.official.duplicates(), [], 'official client: no insert twice');
  assert.deepEqual(s.official.errors, [], 'official client: no error');
  assert.equal(s.raw.mustRefetches, refetches, 'raw follower: 409s');
  assert.deepEqual(s.raw.audit.anomalies, [], 'raw follower: every change once');
  assert.equal(s.raw.error, undefined, 'raw follower: no error');
  assert.equal((await fetchStatus(s.sluice.baseUrl)).status, 'live');
}
