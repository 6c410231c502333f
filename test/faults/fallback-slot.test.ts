// Fallback mode when the replication slot itself is the problem (docs/protocol.md §7): busy (another
// process streams from it, 55006), missing (dropped, 42704) or invalidated (WAL removed, 55000).
// The server stays in fallback while it cannot stream, serves fresh rows from Postgres, and comes
// back to live by itself: without a refetch when the slot survived, with exactly one when a new
// slot had to be made. Clients that followed throughout end equal to Postgres.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  dropSlot,
  invalidateSlot,
  startPostgres,
  terminateWalsender,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import {
  assertFallbackSnapshot,
  fetchStatus,
  waitForStatus,
  type StatusBody,
} from '../support/fallback-checks.js';
import {
  assertClientsConverged,
  assertLiveAndFollowing,
  followItems,
  itemsDatabase,
  type ItemsScenario,
} from '../support/items-scenario.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

/** A database with `items`, a Sluice on it, both clients following it and a writer. */
async function startScenario(
  overrides: Parameters<typeof followItems>[1],
): Promise<ItemsScenario & { cleanup(): Promise<void> }> {
  const db = await itemsDatabase(pg);
  const scenario = await followItems(db, overrides).catch(async (error: unknown) => {
    await db.drop();
    throw error;
  });
  return {
    ...scenario,
    async cleanup() {
      await scenario.close();
      await db.drop();
    },
  };
}

/** Polls `/v1/status` until `replication.last_error.code` is `code`; returns that body. */
async function waitForLastError(
  baseUrl: string,
  code: string,
  timeoutMs = 30_000,
): Promise<StatusBody> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const body = await fetchStatus(baseUrl);
    if (body.replication.last_error?.code === code) return body;
    if (Date.now() > deadline) {
      assert.fail(`last_error never became ${code} in ${timeoutMs} ms: ${JSON.stringify(body)}`);
    }
    await sleep(50);
  }
}

/**
 * Takes the slot away from Sluice: its walsender is terminated and another consumer starts
 * streaming from the slot before Sluice reconnects (retried, terminating Sluice again, if Sluice
 * wins a round). That consumer never acknowledges anything, so the slot keeps its position and
 * Sluice resumes from where it was once the consumer lets go.
 */
async function takeSlot(db: TestDatabase, timeoutMs = 30_000): Promise<LogicalReplicationService> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    // Nobody streaming (the terminated walsender already gone) is fine too.
    await terminateWalsender(db, db.slotName).catch(() => undefined);
    const service = new LogicalReplicationService(
      { connectionString: db.url },
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    );
    const errors: Error[] = [];
    service.on('error', (error) => errors.push(error));
    const started = new Promise<boolean>((resolve) => service.once('start', () => resolve(true)));
    const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [db.publicationName] });
    const ended = service.subscribe(plugin, db.slotName, '0/0').then(
      () => false,
      (error: unknown) => {
        errors.push(error as Error);
        return false;
      },
    );
    if (await Promise.race([started, ended])) return service;
    await service.destroy();
    if (Date.now() > deadline) {
      throw new Error(
        `could not take slot ${db.slotName} in ${attempt + 1} attempts: ${errors[0]}`,
      );
    }
    // 55006 while the terminated walsender is still exiting: try again shortly.
    await sleep(50);
  }
}

/**
 * Invalidates the slot while Sluice is kept off it: whenever Sluice reconnects to the slot
 * before it is lost, its walsender is terminated again (a consumer streaming from the slot would
 * confirm the WAL the invalidation relies on being unconfirmed).
 */
async function invalidateWhileKeptOff(db: TestDatabase): Promise<number> {
  let terminations = 0;
  let done = false;
  const guard = (async () => {
    while (!done) {
      const { rows } = await db.query<{ active_pid: number | null; wal_status: string | null }>(
        'SELECT active_pid, wal_status FROM pg_replication_slots WHERE slot_name = $1',
        [db.slotName],
      );
      const slot = rows[0];
      // Lost (or already dropped by Sluice): the reconnect that follows must go ahead.
      if (!slot || slot.wal_status === 'lost') return;
      if (slot.active_pid !== null) {
        await db.query('SELECT pg_terminate_backend($1)', [slot.active_pid]);
        terminations++;
      }
      await sleep(50);
    }
  })();
  try {
    await invalidateSlot(db, db.slotName);
  } finally {
    done = true;
    await guard;
  }
  return terminations;
}

test('slot busy (55006): fallback with fresh rows, back to live once released, no refetch', async () => {
  // Reconnects ~3 s apart leave room to take the slot between them.
  const scenario = await startScenario({
    replicationRetryMinMs: 3_000,
    replicationRetryMaxMs: 3_000,
  });
  const { db, sluice } = scenario;
  let holder: LogicalReplicationService | undefined;
  try {
    await assertLiveAndFollowing(scenario);

    holder = await takeSlot(db);
    // Sluice's next attempt finds the slot held by another process.
    const busy = await waitForLastError(sluice.baseUrl, '55006');
    assert.equal(busy.status, 'fallback');
    assert.equal(busy.replication_available, false);
    assert.match(busy.replication.last_error?.message ?? '', /in use|active/);
    assert.equal(busy.shapes.state, 'read_only');
    assert.equal(busy.database.primary, 'up');
    const { rows } = await db.query<{ active_pid: number | null }>(
      'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
      [db.slotName],
    );
    assert.notEqual(rows[0]?.active_pid ?? null, null, 'the other consumer holds the slot');

    // Rows written during the outage are served, straight from Postgres.
    await scenario.writer.pause();
    const handle = await assertFallbackSnapshot(
      db,
      sluice.baseUrl,
      { table: 'items' },
      { table: 'items' },
    );
    assert.match(handle, /-fallback-/);
    scenario.writer.resume();
    // Still busy: every attempt keeps failing the same way while the slot is held.
    await sleep(4_000);
    const still = await fetchStatus(sluice.baseUrl);
    assert.equal(still.status, 'fallback');
    assert.equal(still.replication.last_error?.code, '55006');

    await holder.destroy();
    holder = undefined;
    const { body: live } = await waitForStatus(sluice.baseUrl, 'live', 30_000);
    assert.equal(live.replication.state, 'streaming');

    // The slot survived: both clients continue their shape without a 409.
    await assertClientsConverged(scenario, 0);
    assert.equal((await fetchStatus(sluice.baseUrl)).status, 'live');
  } finally {
    await holder?.destroy();
    await scenario.cleanup();
  }
});

test('slot missing (42704): fallback during the backoff, new slot, exactly one refetch', async () => {
  // A long reconnect delay keeps the outage open long enough to look at it.
  const scenario = await startScenario({
    replicationRetryMinMs: 5_000,
    replicationRetryMaxMs: 5_000,
  });
  const { db, sluice } = scenario;
  try {
    await assertLiveAndFollowing(scenario);

    await dropSlot(db, db.slotName);
    const { body } = await waitForStatus(sluice.baseUrl, 'fallback', 10_000);
    assert.equal(body.replication_available, false);
    assert.equal(body.shapes.state, 'read_only');

    await scenario.writer.pause();
    const handle = await assertFallbackSnapshot(
      db,
      sluice.baseUrl,
      { table: 'items' },
      { table: 'items' },
    );
    assert.match(handle, /-fallback-/);
    scenario.writer.resume();

    const { body: live } = await waitForStatus(sluice.baseUrl, 'live', 30_000);
    assert.equal(live.replication.state, 'streaming');
    assert.equal(live.replication.last_error?.code, '42704');
    assert.match(live.replication.last_error?.message ?? '', /does not exist/);
    const { rows } = await db.query<{ active_pid: number | null }>(
      'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
      [db.slotName],
    );
    assert.equal(rows.length, 1, 'a new slot was created');

    // Every shape rotated: one 409 each, then every change once.
    await assertClientsConverged(scenario, 1);
    const status = await fetchStatus(sluice.baseUrl);
    assert.equal(status.status, 'live');
    assert.equal(status.replication.last_error?.code, '42704');
  } finally {
    await scenario.cleanup();
  }
});

test('slot invalidated (55000): new slot, back to live, exactly one refetch', async () => {
  // A slow reconnect keeps the slot inactive while WAL is written past it.
  const scenario = await startScenario({
    replicationRetryMinMs: 8_000,
    replicationRetryMaxMs: 8_000,
  });
  const { db, sluice } = scenario;
  try {
    await assertLiveAndFollowing(scenario);

    await terminateWalsender(db, db.slotName);
    await waitForStatus(sluice.baseUrl, 'fallback', 10_000);
    const terminations = await invalidateWhileKeptOff(db);
    const { rows: lost } = await db.query<{ wal_status: string | null }>(
      'SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1',
      [db.slotName],
    );
    // Sluice may already have replaced the lost slot; otherwise it is still the lost one.
    assert.ok(
      lost.length === 0 || ['lost', 'reserved'].includes(lost[0]?.wal_status ?? ''),
      `slot after invalidation: ${JSON.stringify(lost)} (Sluice terminated ${terminations} more times)`,
    );

    const { body: live } = await waitForStatus(sluice.baseUrl, 'live', 60_000);
    assert.equal(live.replication.state, 'streaming');
    assert.equal(live.replication.last_error?.code, '55000');
    assert.match(live.replication.last_error?.message ?? '', /invalidated/);
    const { rows } = await db.query<{ wal_status: string | null }>(
      'SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1',
      [db.slotName],
    );
    assert.equal(rows[0]?.wal_status, 'reserved', 'a new, healthy slot');

    await assertClientsConverged(scenario, 1);
    const status = await fetchStatus(sluice.baseUrl);
    assert.equal(status.status, 'live');
    assert.equal(status.replication.last_error?.code, '55000');
  } finally {
    await scenario.cleanup();
  }
});
