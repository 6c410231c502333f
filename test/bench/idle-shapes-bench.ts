import { PATHS } from '@sluice/protocol';
import type { TestPostgres } from '@sluice/harness';
import {
  removeStorage,
  startBenchSluice,
  waitUntilHealthy,
  type BenchSluice,
} from './bench-sluice.js';
import {
  expectStatus,
  forEachConcurrently,
  formatMs,
  httpRequest,
  log,
  rssKb,
  scaled,
  sleep,
  type BenchConfig,
} from './bench-support.js';

/** 10,000 shapes on one table: above the default shape limits, so they are raised here. */
const SERVER_ENV = {
  SLUICE_MAX_CONCURRENT_INITIAL: '64',
  SLUICE_MAX_SHAPES: '100000',
  SLUICE_MAX_SHAPES_PER_TABLE: '100000',
};

const TABLE = 'bench_idle';

/**
 * Measure 6: memory per idle shape (docs/performance.md target: ≤ 5 kB RSS each).
 *
 * Shapes are `where=owner = $1` for owners 0…N-1 (N = 10,000), as in measure 4, each of one row
 * (the table holds one per owner), made by one initial request and never read again. The server's RSS is read after a full garbage
 * collection (SIGUSR2 to `gc-on-signal.mjs`, loaded into the server) and a short settling
 * pause, once before the first shape and once after the last; the difference over N is the
 * figure. RSS, not heap: buffers, file handles and the allocator's slack count too.
 */
export interface IdleShapesResult {
  shapes: number;
  rssBeforeKb: number | undefined;
  rssAfterKb: number | undefined;
  kbPerShape: number | undefined;
  createMs: number;
}

export async function benchIdleShapes(
  postgres: TestPostgres,
  config: BenchConfig,
): Promise<IdleShapesResult> {
  const shapes = scaled(config, 10_000, 100);
  log(`\n## 6. Memory per idle shape (${shapes.toLocaleString('en')} shapes, none read since)`);
  const db = await postgres.createDatabase('bench_idle');
  let sluice: BenchSluice | undefined;
  try {
    await db.query(
      `CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, owner int NOT NULL, title text NOT NULL);
       CREATE INDEX ON ${TABLE} (owner);
       ALTER TABLE ${TABLE} REPLICA IDENTITY FULL;
       INSERT INTO ${TABLE} SELECT g, g, 'title ' || g FROM generate_series(0, ${shapes}) g;
       CREATE PUBLICATION ${db.publicationName} FOR TABLE ${TABLE};`,
    );
    const nodeOptions = [
      process.env.BENCH_SERVER_NODE_OPTIONS,
      '--import ./test/bench/gc-on-signal.mjs',
    ];
    sluice = await startBenchSluice(db, {
      env: { ...SERVER_ENV, NODE_OPTIONS: nodeOptions.filter(Boolean).join(' ') },
    });
    await waitUntilHealthy(sluice.baseUrl);
    // One shape made and read first: what every shape shares (the table's catalog, code paths
    // warmed up, the chunk cache's first entries) is in the figure before.
    await createShape(sluice.baseUrl, shapes);
    const rssBeforeKb = await settledRssKb(sluice.pid);
    const started = performance.now();
    const owners = Array.from({ length: shapes }, (_, i) => i);
    await forEachConcurrently(owners, 16, (owner) => createShape(sluice!.baseUrl, owner));
    const createMs = performance.now() - started;
    const rssAfterKb = await settledRssKb(sluice.pid);
    const kbPerShape =
      rssBeforeKb === undefined || rssAfterKb === undefined
        ? undefined
        : (rssAfterKb - rssBeforeKb) / shapes;
    log(
      `${shapes} shapes created in ${formatMs(createMs)}; server RSS ${kb(rssBeforeKb)} before, ` +
        `${kb(rssAfterKb)} after: ${kbPerShape?.toFixed(2) ?? '?'} kB per idle shape`,
    );
    return { shapes, rssBeforeKb, rssAfterKb, kbPerShape, createMs };
  } finally {
    const storageDir = sluice?.storageDir;
    await sluice?.stop();
    if (storageDir) await removeStorage(storageDir);
    await db.drop();
  }
}

async function createShape(baseUrl: string, owner: number): Promise<void> {
  const where = encodeURIComponent('owner = $1');
  const url = `${baseUrl}${PATHS.shape}?table=${TABLE}&where=${where}&params%5B1%5D=${owner}&offset=-1`;
  const response = await httpRequest(url);
  expectStatus(response, 200, `creating the shape of owner ${owner}`);
}

/** RSS after a full collection and a pause, the lowest of three tries (the machine is shared). */
async function settledRssKb(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  let lowest: number | undefined;
  for (let i = 0; i < 3; i++) {
    process.kill(pid, 'SIGUSR2');
    await sleep(1_000);
    const rss = await rssKb(pid);
    if (rss !== undefined) lowest = Math.min(lowest ?? rss, rss);
  }
  return lowest;
}

function kb(value: number | undefined): string {
  return value === undefined ? '?' : `${(value / 1024).toFixed(1)} MB`;
}
