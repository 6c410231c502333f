import http from 'node:http';
import { cpus, totalmem } from 'node:os';
import { readFile } from 'node:fs/promises';
import type { Queryable } from '@sluice/harness';

/** What `npm run bench` reads from the environment. */
export interface BenchConfig {
  /** Runs per measure; the report shows the median (BENCH_RUNS, default 5). */
  runs: number;
  /** Multiplies every data size (BENCH_SCALE, default 1; 0.1 for a quick run). */
  scale: number;
  /** Measures to run (BENCH_ONLY=snapshot,changes,latency,routing,startup,shapes,idle,scaleout,subquery; default all). */
  only: ReadonlySet<MeasureName>;
}

export const MEASURES = [
  'snapshot',
  'changes',
  'latency',
  'routing',
  'startup',
  'shapes',
  'idle',
  'scaleout',
  'subquery',
] as const;
export type MeasureName = (typeof MEASURES)[number];

export function readBenchConfig(env: NodeJS.ProcessEnv): BenchConfig {
  const runs = Number(env.BENCH_RUNS ?? '5');
  const scale = Number(env.BENCH_SCALE ?? '1');
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) {
    throw new Error(`BENCH_RUNS must be an integer from 1 to 50, got "${env.BENCH_RUNS}"`);
  }
  if (!(scale > 0 && scale <= 10)) {
    throw new Error(`BENCH_SCALE must be a number in (0, 10], got "${env.BENCH_SCALE}"`);
  }
  const names = (env.BENCH_ONLY ?? MEASURES.join(','))
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  for (const name of names) {
    if (!(MEASURES as readonly string[]).includes(name)) {
      throw new Error(`BENCH_ONLY: unknown measure "${name}"; use ${MEASURES.join(', ')}`);
    }
  }
  return { runs, scale, only: new Set(names as MeasureName[]) };
}

/** `n` scaled by BENCH_SCALE, at least `min`. */
export function scaled(config: BenchConfig, n: number, min = 1): number {
  return Math.max(min, Math.round(n * config.scale));
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGb: number;
  node: string;
  postgres: string;
  platform: string;
}

export async function machineInfo(db: Queryable): Promise<MachineInfo> {
  const { rows } = await db.query<{ server_version: string }>('SHOW server_version');
  const all = cpus();
  return {
    cpu: all[0]?.model.trim() ?? 'unknown',
    cores: all.length,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    postgres: rows[0]?.server_version ?? 'unknown',
    platform: `${process.platform} ${process.arch}`,
  };
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Nearest-rank percentile (p in 0..100) of a sample. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

/** 512345 → "512k", 1234567 → "1.23M" (per second values). */
export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond)) return 'n/a';
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)}M`;
  if (perSecond >= 1e4) return `${Math.round(perSecond / 1e3)}k`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)}k`;
  return perSecond.toFixed(0);
}

export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(1)} ms`;
}

export function formatRatio(ratio: number): string {
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : 'n/a';
}

export function log(message: string): void {
  process.stdout.write(`${message}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// HTTP (node:http, so the number of sockets is under our control)

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** performance.now() when the last byte of the body arrived. */
  receivedAt: number;
}

export function httpRequest(
  url: string,
  options: { method?: string; agent?: http.Agent } = {},
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      { method: options.method ?? 'GET', agent: options.agent ?? benchAgent },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
            receivedAt: performance.now(),
          }),
        );
      },
    );
    request.on('error', reject);
    request.end();
  });
}

/** The agent for the bench's own control and catch-up requests. */
export const benchAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export function header(response: HttpResponse, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Throws with the body when the status is not the expected one. */
export function expectStatus(response: HttpResponse, expected: number, what: string): void {
  if (response.status !== expected) {
    throw new Error(
      `${what}: expected HTTP ${expected}, got ${response.status}: ${response.body.toString('utf8', 0, 500)}`,
    );
  }
}

/** Occurrences of `needle` in `haystack` (used to count rows without parsing JSON). */
export function countOccurrences(haystack: Buffer, needle: Buffer): number {
  let count = 0;
  for (let at = haystack.indexOf(needle); at !== -1; at = haystack.indexOf(needle, at + 1)) {
    count++;
  }
  return count;
}

/** Runs `task` over `items` with at most `concurrency` in flight. */
export async function forEachConcurrently<T>(
  items: readonly T[],
  concurrency: number,
  task: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      await task(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** Resident set size of a process in kB (Linux), undefined elsewhere. */
export async function rssKb(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  const match = status && /VmRSS:\s+(\d+) kB/.exec(status);
  return match?.[1] ? Number(match[1]) : undefined;
}

/** Resident set size of a process in MB (Linux), undefined elsewhere. */
export async function rssMb(pid: number | undefined): Promise<number | undefined> {
  const kb = await rssKb(pid);
  return kb === undefined ? undefined : Math.round(kb / 1024);
}

/**
 * CPU time (user + system, all threads) a process has used so far, in ms (Linux; USER_HZ=100),
 * undefined elsewhere. Differences show how busy the server was during a measure.
 */
export async function cpuMs(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return undefined;
  // Fields after "(comm) ": state is field 3, utime field 14, stime field 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? ticks * 10 : undefined;
}

/** This process's CPU time so far, in ms. */
export function ownCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

// ---------------------------------------------------------------------------------------------
// Replication slots

/** Drops a slot, waiting for the walsender that held it to go away. */
export async function dropSlot(db: Queryable, slot: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await db.query(
        'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      );
      return;
    } catch (error) {
      // 55006: still active (its walsender has not exited yet).
      if ((error as { code?: string }).code !== '55006' || attempt >= 100) throw error;
      await sleep(50);
    }
  }
}

export async function createPgoutputSlot(db: Queryable, slot: string): Promise<void> {
  await db.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
}
