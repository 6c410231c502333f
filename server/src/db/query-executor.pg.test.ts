import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type pg from 'pg';
import pino from 'pino';
import { freePort } from '@sluice/local-postgres';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import { sessionOptionsString } from '../pg/session-settings.js';
import { CircuitOpenError } from './database-errors.js';
import type { DatabaseName } from './database-target.js';
import { QueryExecutor, type QueryExecutorOptions } from './query-executor.js';

let postgres: TestPostgres;
let db: TestDatabase;
/** A URL nothing listens on: every connection is refused at once. */
let deadUrl: string;

before(async () => {
  postgres = await startPostgres();
  db = await postgres.createDatabase();
  const url = new URL(db.url);
  url.hostname = '127.0.0.1';
  url.port = String(await freePort());
  url.search = '';
  deadUrl = url.toString();
});
after(async () => {
  await db.drop();
  await postgres.stop();
});

interface Events {
  retries: { database: DatabaseName; errorClass: string }[];
  attempts: { database: DatabaseName; outcome: string }[];
}

function executor(
  overrides: Partial<QueryExecutorOptions> = {},
): QueryExecutor & { events: Events } {
  const events: Events = { retries: [], attempts: [] };
  const built = new QueryExecutor({
    primaryUrl: db.url,
    replicaUrl: undefined,
    sessionOptions: '',
    poolSize: 4,
    connectTimeoutMs: 2_000,
    statementTimeoutMs: 10_000,
    idleValidationMs: 10_000,
    maxRetries: 3,
    retryIntervalMs: 5,
    maxBackoffMs: 50,
    replicaAttempts: 2,
    circuitFailureThreshold: 100,
    circuitResetMs: 200,
    onRetry: (database, errorClass) => events.retries.push({ database, errorClass }),
    onAttempt: (database, outcome) => events.attempts.push({ database, outcome }),
    log: pino({ level: 'silent' }),
    ...overrides,
  });
  return Object.assign(built, { events });
}

/** Raises an error with `sqlstate` from the server, as Postgres would. */
async function raise(client: pg.PoolClient, sqlstate: string, message = 'raised by the test') {
  await client.query(
    `DO $$ BEGIN RAISE EXCEPTION '${message}' USING ERRCODE = '${sqlstate}'; END $$`,
  );
}

test('every connection has the session settings, synchronous commits and the statement timeout', async () => {
  const e = executor({ sessionOptions: sessionOptionsString(), statementTimeoutMs: 300 });
  try {
    const settings = await e.primary(async (client) => {
      const { rows } = await client.query<{ tz: string; sync: string; timeout: string }>(
        `SELECT current_setting('TimeZone') AS tz, current_setting('synchronous_commit') AS sync,
                current_setting('statement_timeout') AS timeout`,
      );
      return rows[0];
    });
    assert.deepEqual(settings, { tz: 'UTC', sync: 'on', timeout: '300ms' });
    // Postgres ends a statement past the timeout (57014): a timeout, retried like one.
    let runs = 0;
    await assert.rejects(
      e.primary(async (client) => {
        runs++;
        await client.query('SELECT pg_sleep(2)');
      }),
      (error: { code?: string }) => error.code === '57014',
    );
    assert.equal(runs, 4, 'one try and three retries');
    assert.ok(e.events.retries.every((r) => r.errorClass === 'timeout'));
  } finally {
    await e.close();
  }
});

test('a transaction whose connection is lost is re-run whole on a fresh connection', async () => {
  const e = executor();
  try {
    const pids: number[] = [];
    const result = await e.primary(async (client) => {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      pids.push(rows[0]?.pid ?? 0);
      // The first run's session is killed mid-transaction (as a Postgres restart would).
      if (pids.length === 1) await client.query('SELECT pg_terminate_backend(pg_backend_pid())');
      await client.query('COMMIT');
      return 'done';
    });
    assert.equal(result, 'done');
    assert.equal(pids.length, 2, 'run twice');
    assert.notEqual(pids[0], pids[1], 'on another connection');
    assert.deepEqual(e.events.retries, [{ database: 'primary', errorClass: 'connection_lost' }]);
  } finally {
    await e.close();
  }
});

test('work that is not re-runnable fails cleanly instead of running twice', async () => {
  const e = executor();
  try {
    let runs = 0;
    await assert.rejects(
      e.primary(
        async (client) => {
          runs++;
          await client.query('SELECT pg_terminate_backend(pg_backend_pid())');
        },
        { rerunnable: false },
      ),
      /terminat/i,
    );
    assert.equal(runs, 1);
    assert.deepEqual(e.events.retries, []);
  } finally {
    await e.close();
  }
});

test('serialization failures and deadlocks are retried; permanent errors never are', async () => {
  const e = executor();
  try {
    for (const sqlstate of ['40001', '40P01']) {
      let runs = 0;
      const result = await e.primary(async (client) => {
        if (runs++ < 2) await raise(client, sqlstate);
        return runs;
      });
      assert.equal(result, 3, `${sqlstate}: succeeded on the third run`);
    }
    for (const sqlstate of ['42601', '42501', '22012', '3D000']) {
      let runs = 0;
      await assert.rejects(
        e.primary(async (client) => {
          runs++;
          await raise(client, sqlstate);
        }),
        (error: { code?: string }) => error.code === sqlstate,
      );
      assert.equal(runs, 1, `${sqlstate} is not retried`);
    }
    assert.equal(e.states().primary.breaker, 'closed', 'bad queries do not open the breaker');
  } finally {
    await e.close();
  }
});

test('retries stop after SLUICE_DB_MAX_RETRIES', async () => {
  const e = executor({ maxRetries: 2 });
  try {
    let runs = 0;
    await assert.rejects(
      e.primary(async (client) => {
        runs++;
        await raise(client, '40001');
      }),
    );
    assert.equal(runs, 3, 'one try and two retries');
  } finally {
    await e.close();
  }
});

test('the breaker opens after the threshold, fails fast, half-opens after the reset time and closes on success', async () => {
  const e = executor({
    primaryUrl: deadUrl,
    maxRetries: 0,
    circuitFailureThreshold: 3,
    circuitResetMs: 300,
  });
  try {
    const work = async (client: pg.PoolClient) =>
      (await client.query<{ one: number }>('SELECT 1 AS one')).rows;
    for (let i = 0; i < 3; i++) await assert.rejects(e.primary(work), /ECONNREFUSED/);
    assert.equal(e.states().primary.breaker, 'open');
    const started = Date.now();
    await assert.rejects(e.primary(work), (error) => error instanceof CircuitOpenError);
    assert.ok(Date.now() - started < 50, 'refused without trying');
    assert.equal(e.states().primary.up, false);
  } finally {
    await e.close();
  }
  // The same breaker with a database that answers again: one trial, and it closes.
  const recovering = executor({ circuitFailureThreshold: 1, circuitResetMs: 300, maxRetries: 0 });
  try {
    await assert.rejects(
      recovering.primary(async (client) => {
        await client.query('SELECT pg_terminate_backend(pg_backend_pid())');
      }),
    );
    assert.equal(recovering.states().primary.breaker, 'open');
    await assert.rejects(
      recovering.primary(() => Promise.resolve(1)),
      CircuitOpenError,
    );
    await new Promise((resolve) => setTimeout(resolve, 350));
    assert.equal(await recovering.primary(() => Promise.resolve('trial')), 'trial');
    assert.equal(recovering.states().primary.breaker, 'closed');
    assert.equal(recovering.states().primary.up, true);
  } finally {
    await recovering.close();
  }
});

test('replica first: N tries on a failing replica, then exactly one on the primary', async () => {
  const e = executor({ replicaUrl: deadUrl, replicaAttempts: 3, circuitFailureThreshold: 100 });
  try {
    let primaryRuns = 0;
    const rows = await e.read(async (client) => {
      primaryRuns++;
      return (await client.query<{ one: number }>('SELECT 1 AS one')).rows;
    });
    assert.deepEqual(rows, [{ one: 1 }]);
    assert.equal(primaryRuns, 1);
    const replicaRetries = e.events.retries.filter((r) => r.database === 'replica');
    assert.equal(replicaRetries.length, 2, 'three replica tries: two retries');
    assert.equal(e.states().replica?.up, false);

    // The primary's one try is not retried: a transient failure there reaches the caller.
    let runs = 0;
    await assert.rejects(
      e.read(async (client) => {
        runs++;
        await raise(client, '40001');
      }),
    );
    assert.equal(runs, 1);
  } finally {
    await e.close();
  }
});

test('an error only a replica makes sends the query to the primary', async () => {
  const replicaUrl = new URL(db.url);
  replicaUrl.searchParams.set('application_name', 'pretend_replica');
  const e = executor({ replicaUrl: replicaUrl.toString(), replicaAttempts: 2 });
  try {
    const servedBy: string[] = [];
    const result = await e.read(async (client) => {
      const { rows } = await client.query<{ name: string }>(
        "SELECT current_setting('application_name') AS name",
      );
      const name = rows[0]?.name ?? '';
      servedBy.push(name);
      if (name === 'pretend_replica') await raise(client, '25006', 'read-only transaction');
      return name;
    });
    assert.notEqual(result, 'pretend_replica');
    assert.deepEqual(servedBy.slice(0, 2), ['pretend_replica', 'pretend_replica']);
    assert.equal(servedBy.length, 3);
    assert.ok(e.events.retries.every((r) => r.errorClass === 'replica_only'));
  } finally {
    await e.close();
  }
});

test('a replica with an open breaker is skipped: the primary gets its usual retries', async () => {
  const e = executor({
    replicaUrl: deadUrl,
    replicaAttempts: 1,
    circuitFailureThreshold: 1,
    circuitResetMs: 60_000,
  });
  try {
    await e.read(() => Promise.resolve('opens the replica breaker'));
    assert.equal(e.states().replica?.breaker, 'open');
    let runs = 0;
    const result = await e.read(async (client) => {
      if (runs++ === 0) await raise(client, '40001');
      return 'retried on the primary';
    });
    assert.equal(result, 'retried on the primary');
    assert.equal(runs, 2);
  } finally {
    await e.close();
  }
});

test('minLsn on a server that is not a standby: it sees everything it has, so it answers', async () => {
  const e = executor({ replicaUrl: db.url });
  try {
    const servedBy: DatabaseName[] = [];
    await e.read(() => Promise.resolve('ok'), { minLsn: 1n << 40n });
    for (const attempt of e.events.attempts) servedBy.push(attempt.database);
    assert.deepEqual(servedBy, ['replica']);
  } finally {
    await e.close();
  }
});
