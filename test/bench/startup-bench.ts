import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HEADERS, PATHS } from '@sluice/protocol';
import type { TestPostgres } from '@sluice/harness';
import { removeStorage, startBenchSluice, waitUntilHealthy } from './bench-sluice.js';
import {
  expectStatus,
  forEachConcurrently,
  formatMs,
  header,
  httpRequest,
  log,
  median,
  scaled,
  sleep,
  type BenchConfig,
} from './bench-support.js';

/**
 * Measure 5: start-up with many stored shapes (docs/performance.md target: listening ≤ 1 s and
 * every shape served ≤ 10 s with 10,000). Shapes are `where=owner = $1` for owners 0…N-1, made
 * by one server; each run then starts a new process on the same storage and times, from the
 * spawn:
 *   - listening: until `/v1/health` answers (any status);
 *   - served: until a stored shape, asked for with its handle and offset, answers 200. Lookups
 *     wait for every stored shape to be loaded, so the first stored shape served means all are;
 *     a sample of other shapes is checked after.
 * The baseline is the same start with no stored shape (an empty storage folder), same run.
 */
export interface StartupResult {
  shapes: number;
  listeningMs: number;
  servedMs: number;
  /** Listening with no stored shape, same run. */
  emptyListeningMs: number;
  /** Stored shapes checked to be served under their handle after each run. */
  sampled: number;
}

const TABLE = 'bench_start';
const SAMPLE = 200;
/** The default per-table and total limits are below what is measured. */
const LIMITS = { SLUICE_MAX_SHAPES: '100000', SLUICE_MAX_SHAPES_PER_TABLE: '100000' };

interface StoredShape {
  owner: number;
  handle: string;
  offset: string;
}

export async function benchStartup(
  postgres: TestPostgres,
  config: BenchConfig,
): Promise<StartupResult> {
  const shapes = scaled(config, 10_000, 100);
  log(`\n## 5. Start-up with ${shapes.toLocaleString('en')} stored shapes`);
  const db = await postgres.createDatabase('bench_startup');
  let storageDir: string | undefined;
  try {
    await db.query(
      `CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, owner int NOT NULL, title text NOT NULL);
       INSERT INTO ${TABLE} SELECT g, g % 100, 'title ' || g FROM generate_series(1, 1000) g;
       ALTER TABLE ${TABLE} REPLICA IDENTITY FULL;
       CREATE PUBLICATION ${db.publicationName} FOR TABLE ${TABLE};`,
    );
    const env = { ...LIMITS, SLUICE_MAX_CONCURRENT_INITIAL: '64' };
    const maker = await startBenchSluice(db, { env });
    storageDir = maker.storageDir;
    const stored: StoredShape[] = [];
    try {
      await waitUntilHealthy(maker.baseUrl);
      const started = performance.now();
      const owners = Array.from({ length: shapes }, (_, owner) => owner);
      await forEachConcurrently(owners, 16, async (owner) => {
        const response = await httpRequest(shapeUrl(maker.baseUrl, owner, '-1'));
        expectStatus(response, 200, `creating the shape of owner ${owner}`);
        const handle = header(response, HEADERS.handle) ?? '';
        stored.push({ owner, handle, offset: header(response, HEADERS.offset) ?? '' });
      });
      log(`${shapes} shapes created in ${formatMs(performance.now() - started)}`);
    } finally {
      await maker.stop();
    }

    const listening: number[] = [];
    const served: number[] = [];
    const emptyListening: number[] = [];
    for (let run = 1; run <= config.runs; run++) {
      const empty = await mkdtemp(join(tmpdir(), 'sluice-bench-'));
      try {
        emptyListening.push((await timeStart(empty, env, undefined)).listeningMs);
      } finally {
        await removeStorage(empty);
      }
      const times = await timeStart(storageDir, env, stored);
      listening.push(times.listeningMs);
      served.push(times.servedMs);
      log(
        `  run ${run}/${config.runs}: listening ${formatMs(times.listeningMs)} ` +
          `(no stored shape: ${formatMs(emptyListening.at(-1)!)}), every stored shape served ${formatMs(times.servedMs)}`,
      );
    }
    return {
      shapes,
      listeningMs: median(listening),
      servedMs: median(served),
      emptyListeningMs: median(emptyListening),
      sampled: Math.min(SAMPLE, shapes),
    };
  } finally {
    if (storageDir) await removeStorage(storageDir);
    await db.drop();
  }

  /** Starts a server on `dir` and times it (served: only with stored shapes to ask for). */
  async function timeStart(
    dir: string,
    env: Record<string, string>,
    stored: readonly StoredShape[] | undefined,
  ): Promise<{ listeningMs: number; servedMs: number }> {
    const spawned = performance.now();
    const sluice = await startBenchSluice(db, { storageDir: dir, env });
    try {
      await httpRequest(`${sluice.baseUrl}${PATHS.health}`);
      const listeningMs = performance.now() - spawned;
      if (!stored) return { listeningMs, servedMs: NaN };
      const probe = stored.at(-1)!;
      for (;;) {
        const response = await httpRequest(
          shapeUrl(sluice.baseUrl, probe.owner, probe.offset, probe.handle),
        );
        if (response.status === 200) break;
        expectStatus(response, 503, `owner ${probe.owner}'s stored shape while starting`);
        await sleep(10);
      }
      const servedMs = performance.now() - spawned;
      const sample = stored.filter((_, i) => i % Math.ceil(stored.length / SAMPLE) === 0);
      await forEachConcurrently(sample, 16, async ({ owner, handle, offset }) => {
        const response = await httpRequest(shapeUrl(sluice.baseUrl, owner, offset, handle));
        expectStatus(response, 200, `owner ${owner}'s stored shape, handle ${handle}`);
      });
      return { listeningMs, servedMs };
    } finally {
      await sluice.stop();
    }
  }
}

function shapeUrl(baseUrl: string, owner: number, offset: string, handle?: string): string {
  const where = encodeURIComponent('owner = $1');
  const named = handle === undefined ? '' : `&handle=${handle}`;
  return `${baseUrl}${PATHS.shape}?table=${TABLE}&where=${where}&params%5B1%5D=${owner}&offset=${offset}${named}`;
}
