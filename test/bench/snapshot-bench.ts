import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { HEADERS, PATHS } from '@sluice/protocol';
import type { TestDatabase, TestPostgres } from '@sluice/harness';
import { startBenchSluice, removeStorage, waitUntilHealthy } from './bench-sluice.js';
import {
  countOccurrences,
  cpuMs,
  expectStatus,
  formatMs,
  formatRate,
  formatRatio,
  header,
  httpRequest,
  log,
  median,
  rssMb,
  scaled,
  type BenchConfig,
} from './bench-support.js';

/**
 * Measure 1: initial sync of one large shape, next to `COPY (SELECT …) TO STDOUT` of the same
 * rows read by a client in the same run.
 */
export interface SnapshotResult {
  rows: number;
  tableMb: number;
  copyRowsPerS: number;
  sluiceRowsPerS: number;
  /** Median of the per-run ratios Sluice ÷ COPY (each pair measured back to back). */
  ratio: number;
  /** Median time from the first request until its response (the server builds the log first). */
  firstChunkMs: number;
  sluiceMs: number;
  copyMs: number;
  chunks: number;
  sluiceMb: number;
  copyMb: number;
  serverRssMb: number | undefined;
  /** Median CPU time the server process used during one initial sync (undefined off Linux). */
  serverCpuMs: number | undefined;
}

const TABLE = 'bench_snapshot';
const COLUMNS = ['id', 'title', 'n', 'ts', 'payload'];
/** The text settings Sluice uses for values (docs/protocol.md §4), so COPY prints the same text. */
const SESSION_OPTIONS =
  '-c DateStyle=ISO,\\ DMY -c TimeZone=UTC -c extra_float_digits=1 -c IntervalStyle=iso_8601 -c bytea_output=hex';

export async function benchSnapshot(
  postgres: TestPostgres,
  config: BenchConfig,
): Promise<SnapshotResult> {
  const rows = scaled(config, 1_000_000, 1_000);
  log(`\n## 1. Initial sync of one ${rows.toLocaleString('en')}-row shape vs COPY`);
  const db = await postgres.createDatabase('bench_snapshot');
  try {
    const started = performance.now();
    await db.query(
      `CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, title text NOT NULL, n int NOT NULL,
                              ts timestamptz NOT NULL, payload jsonb NOT NULL)`,
    );
    await db.query(
      `INSERT INTO ${TABLE}
       SELECT g, 'title ' || md5(g::text), (g * 7919) % 100000,
              timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
              jsonb_build_object('k', g % 100, 'tag', substr(md5((g * 3)::text), 1, 12))
         FROM generate_series(1, $1::bigint) g`,
      [rows],
    );
    // Hint bits and the visibility map set now, so no reader pays for them.
    await db.query(`VACUUM (FREEZE, ANALYZE) ${TABLE}`);
    const size = await db.query<{ bytes: string }>(
      `SELECT pg_table_size('${TABLE}')::text AS bytes`,
    );
    const tableMb = Number(size.rows[0]?.bytes ?? 0) / 2 ** 20;
    log(`table filled in ${formatMs(performance.now() - started)} (${tableMb.toFixed(0)} MB)`);

    const sluice = await startBenchSluice(db);
    try {
      await waitUntilHealthy(sluice.baseUrl);
      // Warm-up (not counted): the table in the OS cache and shared buffers for both readers.
      await copyTable(db);

      const copy: { ms: number; bytes: number }[] = [];
      const served: SluiceSnapshot[] = [];
      const serverCpu: number[] = [];
      for (let run = 1; run <= config.runs; run++) {
        const c = await copyTable(db);
        if (c.rows !== rows) throw new Error(`COPY returned ${c.rows} rows, expected ${rows}`);
        const cpuBefore = await cpuMs(sluice.pid);
        const s = await sluiceSnapshot(sluice.baseUrl);
        const cpuAfter = await cpuMs(sluice.pid);
        if (cpuBefore !== undefined && cpuAfter !== undefined) serverCpu.push(cpuAfter - cpuBefore);
        if (s.rows !== rows) throw new Error(`Sluice served ${s.rows} rows, expected ${rows}`);
        copy.push(c);
        served.push(s);
        log(
          `run ${run}/${config.runs}: COPY ${formatRate(rows / (c.ms / 1000))} rows/s (${formatMs(c.ms)}) | ` +
            `Sluice ${formatRate(rows / (s.ms / 1000))} rows/s (${formatMs(s.ms)}; first chunk after ${formatMs(s.firstChunkMs)}, ` +
            `${s.chunks} chunks, ${(s.bytes / 2 ** 20).toFixed(0)} MB, server CPU ${formatMs(serverCpu.at(-1) ?? NaN)}) | ` +
            `ratio ${formatRatio(c.ms / s.ms)}`,
        );
        // A fresh shape for the next run: the log is deleted and the next offset=-1 rebuilds it.
        const deleted = await httpRequest(
          `${sluice.baseUrl}${PATHS.shape}?table=${TABLE}&handle=${encodeURIComponent(s.handle)}`,
          { method: 'DELETE' },
        );
        expectStatus(deleted, 202, 'DELETE shape');
      }
      const serverRssMb = await rssMb(sluice.pid);
      const copyMs = median(copy.map((c) => c.ms));
      const sluiceMs = median(served.map((s) => s.ms));
      const copyRowsPerS = median(copy.map((c) => rows / (c.ms / 1000)));
      const sluiceRowsPerS = median(served.map((s) => rows / (s.ms / 1000)));
      return {
        rows,
        tableMb,
        copyRowsPerS,
        sluiceRowsPerS,
        ratio: median(copy.map((c, i) => c.ms / served[i]!.ms)),
        firstChunkMs: median(served.map((s) => s.firstChunkMs)),
        sluiceMs,
        copyMs,
        chunks: served[0]?.chunks ?? 0,
        sluiceMb: (served[0]?.bytes ?? 0) / 2 ** 20,
        copyMb: (copy[0]?.bytes ?? 0) / 2 ** 20,
        serverRssMb,
        serverCpuMs: serverCpu.length > 0 ? median(serverCpu) : undefined,
      };
    } finally {
      await sluice.stop();
      await removeStorage(sluice.storageDir);
    }
  } finally {
    await db.drop();
  }
}

/** `COPY (SELECT …) TO STDOUT` of the same columns, read to the end by this process. */
async function copyTable(db: TestDatabase): Promise<{ ms: number; rows: number; bytes: number }> {
  const client = new pg.Client({ connectionString: db.url, options: SESSION_OPTIONS });
  await client.connect();
  try {
    const started = performance.now();
    const stream = client.query(
      copyTo(`COPY (SELECT ${COLUMNS.join(', ')} FROM ${TABLE}) TO STDOUT`),
    );
    let rows = 0;
    let bytes = 0;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      for (let at = chunk.indexOf(0x0a); at !== -1; at = chunk.indexOf(0x0a, at + 1)) rows++;
    }
    return { ms: performance.now() - started, rows, bytes };
  } finally {
    await client.end();
  }
}

interface SluiceSnapshot {
  handle: string;
  ms: number;
  firstChunkMs: number;
  rows: number;
  bytes: number;
  chunks: number;
}

const INSERT_MARK = Buffer.from('"operation":"insert"');

/**
 * An initial sync the way a client does it: `offset=-1`, then every chunk named by
 * `electric-offset`/`electric-handle` until a response says up-to-date. Bodies are read fully
 * and rows counted without parsing, as the COPY reader does.
 */
async function sluiceSnapshot(baseUrl: string): Promise<SluiceSnapshot> {
  const started = performance.now();
  let response = await httpRequest(`${baseUrl}${PATHS.shape}?table=${TABLE}&offset=-1`);
  expectStatus(response, 200, 'initial request');
  const firstChunkMs = response.receivedAt - started;
  const handle = header(response, HEADERS.handle);
  if (!handle) throw new Error('no electric-handle on the first response');
  let rows = 0;
  let bytes = 0;
  let chunks = 0;
  for (;;) {
    rows += countOccurrences(response.body, INSERT_MARK);
    bytes += response.body.length;
    chunks++;
    if (header(response, HEADERS.upToDate) !== undefined) break;
    const offset = header(response, HEADERS.offset);
    if (!offset) throw new Error('no electric-offset');
    response = await httpRequest(
      `${baseUrl}${PATHS.shape}?table=${TABLE}&handle=${encodeURIComponent(handle)}&offset=${offset}`,
    );
    expectStatus(response, 200, `chunk after ${offset}`);
  }
  return { handle, ms: performance.now() - started, firstChunkMs, rows, bytes, chunks };
}
