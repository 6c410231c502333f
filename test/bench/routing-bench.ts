import pg from 'pg';
import { HEADERS, PATHS } from '@sluice/protocol';
import type { TestDatabase, TestPostgres } from '@sluice/harness';
import {
  removeStorage,
  startBenchSluice,
  waitUntilHealthy,
  walsenderStart,
  type BenchSluice,
} from './bench-sluice.js';
import {
  cpuMs,
  createPgoutputSlot,
  dropSlot,
  expectStatus,
  forEachConcurrently,
  formatMs,
  formatRate,
  formatRatio,
  header,
  httpRequest,
  log,
  median,
  percentile,
  scaled,
  sleep,
  type BenchConfig,
} from './bench-support.js';
import { readWithLibrary } from './wal-baselines.js';

/** 10,000 shapes on one table: above the default shape limits, so they are raised here. */
const SERVER_ENV = {
  SLUICE_MAX_CONCURRENT_INITIAL: '64',
  SLUICE_MAX_SHAPES: '100000',
  SLUICE_MAX_SHAPES_PER_TABLE: '100000',
};

/**
 * Measure 4: what one change costs against the number of equality-filtered shapes on its table
 * (docs/performance.md target: flat from 10 to 10,000 shapes).
 *
 * Shapes are `where=owner = $1` for owners 0…N-1, N = 10, 1,000 and 10,000 (added as N grows).
 * The workload is the same for every N: inserts spread over owners 0…9, 100 per transaction, so
 * the same ten shapes take every change and the other N-10 must simply not be visited. Per N:
 *   - throughput, measured as in measure 2: Sluice stopped, the workload written, the same WAL
 *     read by an in-process pg-logical-replication consumer (the baseline), then Sluice restarted
 *     and timed from its walsender's start until every shape log holds the workload;
 *   - latency: one long-poll client on owner 0's shape, single-row autocommit inserts, commit →
 *     response.
 */
export interface RoutingPoint {
  shapes: number;
  changes: number;
  sluicePerS: number;
  libraryPerS: number;
  /** Sluice ÷ library consumer, median of per-run ratios. */
  ratio: number;
  /** Median server CPU per change, from restart to caught up (includes start-up). */
  cpuPerChangeMs: number | undefined;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencySamples: number;
}

export interface RoutingResult {
  points: RoutingPoint[];
  /** Throughput at the most shapes ÷ throughput at the fewest, same run. */
  flatness: number;
}

const TABLE = 'bench_route';
const PER_TRANSACTION = 100;
const RECEIVERS = 10;
const LATENCY_EVENTS = 30;

export async function benchRouting(
  postgres: TestPostgres,
  config: BenchConfig,
): Promise<RoutingResult> {
  const counts = [10, scaled(config, 1_000, 100), scaled(config, 10_000, 1_000)];
  const changes = Math.ceil(scaled(config, 50_000, 1_000) / PER_TRANSACTION) * PER_TRANSACTION;
  log(
    `\n## 4. Changes against the number of equality-filtered shapes (${counts.join(', ')} shapes; ` +
      `${changes.toLocaleString('en')} inserts per run, all for ${RECEIVERS} of the shapes)`,
  );
  const db = await postgres.createDatabase('bench_routing');
  let sluice: BenchSluice | undefined;
  let storageDir: string | undefined;
  try {
    await db.query(
      `CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, owner int NOT NULL, title text NOT NULL,
                              n int NOT NULL);
       CREATE INDEX ON ${TABLE} (owner);
       ALTER TABLE ${TABLE} REPLICA IDENTITY FULL;
       CREATE PUBLICATION ${db.publicationName} FOR TABLE ${TABLE};`,
    );
    sluice = await startBenchSluice(db, { env: SERVER_ENV });
    storageDir = sluice.storageDir;
    await waitUntilHealthy(sluice.baseUrl);

    const points: RoutingPoint[] = [];
    let created = 0;
    let nextId = 1;
    for (const shapes of counts) {
      const started = performance.now();
      const baseUrl = sluice.baseUrl;
      const owners = Array.from({ length: shapes - created }, (_, i) => created + i);
      await forEachConcurrently(owners, 16, async (owner) => {
        const response = await httpRequest(`${shapeUrl(baseUrl, owner)}&offset=-1`);
        expectStatus(response, 200, `creating the shape of owner ${owner}`);
      });
      created = shapes;
      log(
        `${shapes} shapes (${owners.length} created in ${formatMs(performance.now() - started)})`,
      );

      const sluicePerS: number[] = [];
      const libraryPerS: number[] = [];
      const ratios: number[] = [];
      const cpu: number[] = [];
      for (let run = 1; run <= config.runs; run++) {
        const slot = `bench_route_lib_${shapes}_${run}`;
        await sluice.stop();
        await createPgoutputSlot(db, slot);
        await writeWorkload(db, nextId, changes);
        nextId += changes;
        const library = await readWithLibrary(db.url, slot, db.publicationName, changes);
        await dropSlot(db, slot);
        sluice = await startBenchSluice(db, { storageDir, env: SERVER_ENV });
        const cpuBefore = await cpuMs(sluice.pid);
        const done = await waitForSluice(sluice.baseUrl, library.finalEndLsn);
        const cpuAfter = await cpuMs(sluice.pid);
        const sluiceMs = done - (await walsenderStart(db));
        const perS = (ms: number) => changes / (ms / 1000);
        sluicePerS.push(perS(sluiceMs));
        libraryPerS.push(perS(library.ms));
        ratios.push(library.ms / sluiceMs);
        if (cpuBefore !== undefined && cpuAfter !== undefined) {
          cpu.push((cpuAfter - cpuBefore) / changes);
        }
        log(
          `  run ${run}/${config.runs}: Sluice ${formatRate(perS(sluiceMs))}/s (${formatMs(sluiceMs)}), ` +
            `library consumer ${formatRate(perS(library.ms))}/s, ratio ${formatRatio(library.ms / sluiceMs)}, ` +
            `server CPU per change ${((cpu.at(-1) ?? NaN) * 1000).toFixed(1)} µs`,
        );
      }
      const latencies = await measureLatency(db, sluice.baseUrl, nextId, config.runs);
      nextId += latencies.length;
      const point: RoutingPoint = {
        shapes,
        changes,
        sluicePerS: median(sluicePerS),
        libraryPerS: median(libraryPerS),
        ratio: median(ratios),
        cpuPerChangeMs: cpu.length > 0 ? median(cpu) : undefined,
        latencyP50Ms: percentile(latencies, 50),
        latencyP99Ms: percentile(latencies, 99),
        latencySamples: latencies.length,
      };
      log(
        `  ${shapes} shapes: ${formatRate(point.sluicePerS)} changes/s (median), latency p50 ` +
          `${formatMs(point.latencyP50Ms)}, p99 ${formatMs(point.latencyP99Ms)} (${latencies.length} commits)`,
      );
      points.push(point);
    }
    await verifyReceivers(db, sluice.baseUrl);
    const flatness = points.at(-1)!.sluicePerS / points[0]!.sluicePerS;
    return { points, flatness };
  } finally {
    await sluice?.stop();
    if (storageDir) await removeStorage(storageDir);
    await db.drop();
  }
}

function shapeUrl(baseUrl: string, owner: number): string {
  const where = encodeURIComponent('owner = $1');
  return `${baseUrl}${PATHS.shape}?table=${TABLE}&where=${where}&params%5B1%5D=${owner}`;
}

/** N inserts, 100 per transaction, owners cycling through the receiving shapes. */
async function writeWorkload(db: TestDatabase, firstId: number, changes: number): Promise<void> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    for (let from = firstId; from < firstId + changes; from += PER_TRANSACTION) {
      await client.query(
        `INSERT INTO ${TABLE} (id, owner, title, n)
         SELECT g, (g % ${RECEIVERS})::int, 'title ' || md5(g::text), (g * 7919) % 100000
           FROM generate_series($1::bigint, $2::bigint) g`,
        [from, from + PER_TRANSACTION - 1],
      );
    }
  } finally {
    await client.end();
  }
}

/** Resolves the wall-clock time at which every shape log holds everything up to `endLsn`. */
async function waitForSluice(baseUrl: string, endLsn: bigint): Promise<number> {
  const deadline = Date.now() + 600_000;
  for (;;) {
    const response = await httpRequest(`${shapeUrl(baseUrl, 0)}&offset=now`);
    if (response.status === 200) {
      const body = JSON.parse(response.body.toString()) as {
        headers: { global_last_seen_lsn?: string };
      }[];
      const seen = body.at(-1)?.headers.global_last_seen_lsn;
      if (seen !== undefined && BigInt(seen) >= endLsn) return Date.now();
    } else if (response.status !== 503) {
      expectStatus(response, 200, 'offset=now');
    }
    if (Date.now() > deadline) throw new Error('Sluice did not catch up within 10 minutes');
    await sleep(10);
  }
}

/**
 * Commit → response for a live client of owner 0's shape: the long-poll is parked first, the
 * INSERT's send time is the reference (it errs against Sluice by at most its round trip).
 */
async function measureLatency(
  db: TestDatabase,
  baseUrl: string,
  firstId: number,
  runs: number,
): Promise<number[]> {
  const writer = new pg.Client({ connectionString: db.url });
  await writer.connect();
  try {
    let response = await httpRequest(`${shapeUrl(baseUrl, 0)}&offset=now`);
    expectStatus(response, 200, 'offset=now');
    const handle = header(response, HEADERS.handle) ?? '';
    let offset = header(response, HEADERS.offset) ?? '';
    const latencies: number[] = [];
    const events = LATENCY_EVENTS * runs;
    for (let i = 0; i < events; i++) {
      const poll = httpRequest(
        `${shapeUrl(baseUrl, 0)}&handle=${handle}&offset=${offset}&live=true`,
      );
      await sleep(20); // parked on the server
      const committedAt = performance.now();
      await writer.query(`INSERT INTO ${TABLE} VALUES ($1, 0, 'probe', 0)`, [firstId + i]);
      response = await poll;
      expectStatus(response, 200, 'live request');
      if (!response.body.includes(`"id":"${firstId + i}"`)) {
        throw new Error(`the live response lacks row ${firstId + i}`);
      }
      latencies.push(response.receivedAt - committedAt);
      offset = header(response, HEADERS.offset) ?? offset;
    }
    return latencies;
  } finally {
    await writer.end();
  }
}

/** The receiving shapes hold exactly their owners' rows; an unused one holds none. */
async function verifyReceivers(db: TestDatabase, baseUrl: string): Promise<void> {
  await forEachConcurrently([0, 1, RECEIVERS + 1], 3, async (owner) => {
    const { rows } = await db.query<{ count: string }>(
      `SELECT count(*)::text AS count FROM ${TABLE} WHERE owner = $1`,
      [owner],
    );
    let response = await httpRequest(`${shapeUrl(baseUrl, owner)}&offset=-1`);
    const handle = header(response, HEADERS.handle) ?? '';
    const keys = new Set<string>();
    for (;;) {
      expectStatus(response, 200, `reading owner ${owner}`);
      for (const message of JSON.parse(response.body.toString()) as {
        key?: string;
        headers: { operation?: string };
      }[]) {
        if (message.key && message.headers.operation === 'insert') keys.add(message.key);
      }
      if (header(response, HEADERS.upToDate) !== undefined) break;
      response = await httpRequest(
        `${shapeUrl(baseUrl, owner)}&handle=${handle}&offset=${header(response, HEADERS.offset)}`,
      );
    }
    if (keys.size !== Number(rows[0]?.count)) {
      throw new Error(
        `owner ${owner}: the shape holds ${keys.size} rows, the table ${rows[0]?.count}`,
      );
    }
  });
}
