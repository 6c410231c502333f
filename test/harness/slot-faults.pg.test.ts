import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import { dropSlot, invalidateSlot, terminateWalsender } from './slot-faults.js';
import { startPostgres, type TestPostgres } from './start-postgres.js';
import type { TestDatabase } from './test-database.js';

type PgError = Error & { code?: string };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Streams from the database's slot with a real walsender; resolves how the stream ended. */
function streamFrom(db: TestDatabase): {
  service: LogicalReplicationService;
  ended: Promise<PgError | undefined>;
} {
  const service = new LogicalReplicationService(
    { connectionString: db.url },
    { acknowledge: { auto: false, timeoutSeconds: 0 } },
  );
  const errors: Error[] = [];
  service.on('error', (error) => errors.push(error));
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [db.publicationName] });
  const ended = service.subscribe(plugin, db.slotName).then(
    () => errors[0],
    (error: unknown) => error as PgError,
  );
  return { service, ended };
}

async function activePid(db: TestDatabase): Promise<number | null | undefined> {
  const { rows } = await db.query<{ active_pid: number | null }>(
    'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
    [db.slotName],
  );
  return rows[0]?.active_pid;
}

describe('slot fault tools', () => {
  let pg: TestPostgres;
  let db: TestDatabase;

  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    await pg.stop();
  });

  async function freshSlot(): Promise<TestDatabase> {
    db = await pg.createDatabase();
    await db.query('CREATE TABLE items (id int PRIMARY KEY)');
    await db.query(`CREATE PUBLICATION ${db.publicationName} FOR TABLE items`);
    await db.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [db.slotName]);
    return db;
  }

  test('terminateWalsender ends an active stream and frees the slot', async () => {
    const db = await freshSlot();
    const { service, ended } = streamFrom(db);
    await waitFor('walsender', async () => ((await activePid(db)) ? true : undefined));
    const pid = await terminateWalsender(db, db.slotName);
    assert.ok(pid > 0);
    const error = await ended;
    assert.ok(error, 'the stream must end with an error');
    await waitFor('slot to be released', async () =>
      (await activePid(db)) === null ? true : undefined,
    );
    await service.stop();
    await assert.rejects(terminateWalsender(db, db.slotName), /no active walsender/);
    await db.drop();
  });

  test('dropSlot removes a slot that is being streamed from', async () => {
    const db = await freshSlot();
    const { service, ended } = streamFrom(db);
    await waitFor('walsender', async () => ((await activePid(db)) ? true : undefined));
    await dropSlot(db, db.slotName);
    assert.equal(await activePid(db), undefined);
    assert.ok(await ended);
    await service.stop();
    await db.drop();
  });

  test('invalidateSlot makes the slot unusable with SQLSTATE 55000', async () => {
    const db = await freshSlot();
    await invalidateSlot(db, db.slotName);
    const { rows } = await db.query<{ wal_status: string }>(
      'SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1',
      [db.slotName],
    );
    assert.equal(rows[0]?.wal_status, 'lost');
    const { service, ended } = streamFrom(db);
    const error = await ended;
    assert.equal(error?.code, '55000', `expected 55000, got ${String(error)}`);
    await service.stop();
    const setting = await db.query<{ v: string }>(
      "SELECT current_setting('max_slot_wal_keep_size') AS v",
    );
    assert.equal(setting.rows[0]?.v, '-1', 'the harness restores the setting');
    await db.drop();
  });
});

describe('cluster process faults', () => {
  let pg: TestPostgres;

  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    await pg.stop();
  });

  test('restart keeps committed data and accepts connections again', async () => {
    const db = await pg.createDatabase();
    await db.query('CREATE TABLE kept (id int)');
    await db.query('INSERT INTO kept VALUES (1), (2)');
    await pg.restart({ mode: 'fast' });
    const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM kept');
    assert.equal(rows[0]?.n, '2');
    await db.drop();
  });

  test('crash kills open sessions, recovery brings committed data back', async () => {
    const db = await pg.createDatabase();
    await db.query('CREATE TABLE kept (id int)');
    await db.query('INSERT INTO kept VALUES (1)');
    const { default: pgLib } = await import('pg');
    const session = new pgLib.Client({ connectionString: db.url });
    session.on('error', () => undefined);
    await session.connect();
    await pg.crash();
    await assert.rejects(session.query('SELECT 1'));
    await assert.rejects(db.query('SELECT 1'), /ECONNREFUSED/);
    await pg.start();
    const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM kept');
    assert.equal(rows[0]?.n, '1');
    await session.end().catch(() => undefined);
    await db.drop();
  });

  test('restart in immediate mode is crash plus start', async () => {
    const db = await pg.createDatabase();
    await db.query('CREATE TABLE t (id int)');
    await db.query('INSERT INTO t VALUES (7)');
    await pg.restart({ mode: 'immediate' });
    const { rows } = await db.query<{ id: number }>('SELECT id FROM t');
    assert.deepEqual(rows, [{ id: 7 }]);
    await db.drop();
  });
});
