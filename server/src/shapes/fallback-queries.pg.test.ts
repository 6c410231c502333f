import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import { QueryExecutor } from '../db/query-executor.js';
import { TablePolicy } from '../pg/table-policy.js';
import { SluiceMetrics } from '../status/sluice-metrics.js';
import { StatusMonitor } from '../status/status-monitor.js';
import { DEFAULT_WHERE_LIMITS } from '../where/where-limits.js';
import { FallbackQueries } from './fallback-queries.js';
import type { ShapeDefinition } from './shape-definition.js';

let postgres: TestPostgres;
let db: TestDatabase;
let executor: QueryExecutor;

before(async () => {
  postgres = await startPostgres();
  db = await postgres.createDatabase();
  await db.query(
    `CREATE TABLE items (id int PRIMARY KEY, label text);
     INSERT INTO items SELECT g, repeat('x', 100) FROM generate_series(1, 200) g`,
  );
  executor = new QueryExecutor({
    primaryUrl: db.url,
    replicaUrl: undefined,
    sessionOptions: '',
    poolSize: 4,
    connectTimeoutMs: 2_000,
    statementTimeoutMs: 10_000,
    idleValidationMs: 10_000,
    maxRetries: 0,
    retryIntervalMs: 5,
    maxBackoffMs: 50,
    replicaAttempts: 1,
    circuitFailureThreshold: 100,
    circuitResetMs: 200,
    log: pino({ level: 'silent' }),
  });
});
after(async () => {
  await executor.close();
  await db.drop();
  await postgres.stop();
});

/** Shapes of `items` that differ only in their clause: each result holds `rows` rows. */
function shape(rows: number): ShapeDefinition {
  return {
    table: { schema: 'public', name: 'items' },
    columns: undefined,
    replica: 'default',
    log: 'full',
    where: `id <= ${rows}`,
  };
}

function fallbackQueries(maxCacheBytes: number): {
  fallback: FallbackQueries;
  queries: () => Promise<number>;
} {
  const status = new StatusMonitor({
    slotName: 'unused',
    shapeCount: () => 0,
    storageHealth: () => ({ backend: 'disk', state: 'up', breaker: 'closed' }),
  });
  const metrics = new SluiceMetrics(
    status,
    () => executor.states(),
    () => ({ shapes: 0, logBytes: 0 }),
  );
  const fallback = new FallbackQueries({
    executor,
    maxAgeMs: 60_000,
    maxConcurrent: 8,
    maxCacheBytes,
    metrics,
    tables: new TablePolicy(undefined, 'auto'),
    whereLimits: DEFAULT_WHERE_LIMITS,
  });
  /** Queries sent to Postgres so far (the counter behind `sluice_fallback_queries_total`). */
  const queries = async () => (await metrics.fallbackQueries.get()).values[0]?.value ?? 0;
  return { fallback, queries };
}

async function ask(fallback: FallbackQueries, definition: ShapeDefinition): Promise<number> {
  const pending = fallback.get(definition);
  assert.ok(pending, 'not refused');
  return (await pending).rows.length;
}

test('finished fallback rows answer identical requests within the window', async () => {
  const { fallback, queries } = fallbackQueries(10_000_000);
  await ask(fallback, shape(100));
  await ask(fallback, shape(50));
  await ask(fallback, shape(100));
  await ask(fallback, shape(50));
  assert.equal(await queries(), 2);
});

test('the cache holds at most its bytes: the least recently used result goes first', async () => {
  const probe = fallbackQueries(10_000_000);
  const oneResult = await ask(probe.fallback, shape(100));
  // Room for one result of 100 rows, not two.
  const { fallback, queries } = fallbackQueries(Math.ceil(oneResult * 1.5));
  await ask(fallback, shape(100));
  await ask(fallback, shape(99));
  assert.equal(await queries(), 2);
  await ask(fallback, shape(99));
  assert.equal(await queries(), 2, 'the most recent result is kept');
  await ask(fallback, shape(100));
  assert.equal(await queries(), 3, 'the older result was dropped to stay within the bytes');
});

test('a result larger than the whole cache is served but not kept', async () => {
  const { fallback, queries } = fallbackQueries(1_000);
  const bytes = await ask(fallback, shape(200));
  assert.ok(bytes > 1_000);
  assert.equal(await ask(fallback, shape(200)), bytes);
  assert.equal(await queries(), 2);
});
