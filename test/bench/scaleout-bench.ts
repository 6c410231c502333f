import http from 'node:http';
import pg from 'pg';
import type { TestPostgres } from '@sluice/harness';
import { startSharedSluices, stopAndRemove, type BenchSluice } from './bench-sluice.js';
import {
  cpuMs,
  forEachConcurrently,
  formatMs,
  log,
  median,
  scaled,
  sleep,
  type BenchConfig,
} from './bench-support.js';
import {
  catchUpToEnd,
  createLiveClient,
  describeClients,
  EVENT_TIMEOUT_MS,
  formatLatencies,
  liveLimitsEnv,
  summarizeLatencies,
  throwIfFailed,
  waitForEvent,
  WARMUP_EVENTS,
  type LiveSetup,
  type LiveTransport,
} from './live-clients.js';
import type { LongPoller } from './long-pollers.js';

/**
 * Measure 8 (issue 17): commit → client latency with the clients of one shape split evenly across
 * 1, 2 and 3 Sluice processes sharing one Redis storage and one slot. The first process writes
 * (replication, log appends, a pub/sub announcement per flush); the others are readers that
 * refresh the log when a flush is announced, then wake their own clients. Long-polls, then
 * WebSockets, on the same processes; commits are made at a steady rate whether or not clients
 * have caught up (open loop), and each sample is, as in measure 3, the arrival of the row at a
 * client minus the moment just before its INSERT was sent. On one machine the processes share
 * its cores, so this is the cost of the reader path, not added capacity.
 */
export interface ScaleoutResult {
  transport: LiveTransport;
  instances: number;
  clients: number;
  eventsPerRun: number;
  commitsPerS: number;
  /** Medians over runs of each run's percentile over all client × event samples. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  samplesPerRun: number;
  /** Median over runs of all the processes' CPU time per commit. */
  serverCpuPerEventMs: number | undefined;
  /** The writer's part of it. */
  writerCpuPerEventMs: number | undefined;
  insertRoundTripMs: number;
}

const TABLE = 'bench_fanout';
const INSTANCES = [1, 2, 3];
const TRANSPORTS: LiveTransport[] = ['long-poll', 'websocket'];
/** The steady commit rate: well below what 2 cores serve for these clients, so it measures delay. */
const COMMIT_INTERVAL_MS = 200;

export async function benchScaleout(
  postgres: TestPostgres,
  config: BenchConfig,
  redisUrl: string,
): Promise<ScaleoutResult[]> {
  // A multiple of 6, so every instance count splits it evenly.
  const clients = Math.max(6, Math.round(scaled(config, 300) / 6) * 6);
  const events = scaled(config, 50, 10);
  log(
    `\n## 8. Fan-out across 1, 2 and 3 instances on one Redis: ${clients} clients of one shape ` +
      `split across them, long-polls then WebSockets, a commit every ${COMMIT_INTERVAL_MS} ms`,
  );
  const results: ScaleoutResult[] = [];
  for (const instances of INSTANCES) {
    // A database (slot, publication, Redis keys) per instance count: no state carried over.
    const db = await postgres.createDatabase(`bench_scaleout_${instances}`);
    try {
      await db.query(
        `CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, note text NOT NULL DEFAULT 'fan-out probe')`,
      );
      const writer = new pg.Client({ connectionString: db.url });
      await writer.connect();
      const sluices = await startSharedSluices(db, instances, {
        redisUrl,
        env: liveLimitsEnv(clients),
      });
      try {
        let firstId = 1;
        for (const transport of TRANSPORTS) {
          const setup = { transport, clients, events, runs: config.runs, firstId };
          results.push(await measure(sluices, writer, setup));
          firstId += (WARMUP_EVENTS + events) * config.runs;
        }
      } finally {
        await stopAndRemove(sluices);
        await writer.end();
      }
    } finally {
      await db.drop();
    }
  }
  return results;
}

async function measure(
  sluices: readonly BenchSluice[],
  writer: pg.Client,
  { transport, clients, events, runs, firstId }: LiveSetup,
): Promise<ScaleoutResult> {
  // Each server's own view of the shape: a reader gets the writer's shape (one handle for all).
  const starts = await Promise.all(sluices.map((sluice) => catchUpToEnd(sluice.baseUrl, TABLE)));
  const handles = new Set(starts.map((start) => start.handle));
  if (handles.size !== 1)
    throw new Error(`the servers serve different shapes: ${[...handles].join(', ')}`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients + 100 });
  // Client i on server i mod N: the same number on each.
  const pollers: LongPoller[] = Array.from({ length: clients }, (_, index) => {
    const at = index % sluices.length;
    const { baseUrl } = sluices[at]!;
    return createLiveClient({
      transport,
      kind: 'raw',
      baseUrl,
      table: TABLE,
      agent,
      ...starts[at]!,
    });
  });
  const label = `${describeClients(transport, clients)} over ${sluices.length} instance(s)`;
  try {
    await forEachConcurrently(pollers, 50, (poller) => poller.start());
    // Every request parked (every subscription registered).
    await sleep(2_000);
    const p50: number[] = [];
    const p99: number[] = [];
    const max: number[] = [];
    const serverCpu: number[] = [];
    const writerCpu: number[] = [];
    const insertRoundTrips: number[] = [];
    let samplesPerRun = 0;
    let id = firstId;
    for (let run = 1; run <= runs; run++) {
      const cpuBefore = await Promise.all(sluices.map((sluice) => cpuMs(sluice.pid)));
      const committed: { id: number; at: number }[] = [];
      const start = performance.now();
      for (let event = 0; event < WARMUP_EVENTS + events; event++) {
        // Open loop: each commit at its slot on a fixed grid, not after the last was delivered.
        const due = start + event * COMMIT_INTERVAL_MS;
        await sleep(Math.max(0, due - performance.now()));
        throwIfFailed(pollers);
        const eventId = id++;
        // As in measure 3: the reference is taken just before the autocommit INSERT is sent.
        const at = performance.now();
        await writer.query(`INSERT INTO ${TABLE} (id) VALUES ($1)`, [eventId]);
        if (event >= WARMUP_EVENTS) {
          insertRoundTrips.push(performance.now() - at);
          committed.push({ id: eventId, at });
        }
      }
      for (const { id: eventId, at } of committed) {
        await waitForEvent(pollers, eventId, at + EVENT_TIMEOUT_MS);
      }
      const cpuAfter = await Promise.all(sluices.map((sluice) => cpuMs(sluice.pid)));
      const perEvent = cpuAfter.map((after, index) => {
        const before = cpuBefore[index];
        return after === undefined || before === undefined
          ? undefined
          : (after - before) / (WARMUP_EVENTS + events);
      });
      if (perEvent.every((ms) => ms !== undefined)) {
        serverCpu.push(perEvent.reduce((sum, ms) => sum + ms, 0));
        writerCpu.push(perEvent[0]!);
      }
      const latencies: number[] = [];
      for (const { id: eventId, at } of committed) {
        for (const poller of pollers) latencies.push(poller.received.get(eventId)! - at);
      }
      const summary = summarizeLatencies(latencies);
      samplesPerRun = summary.samples;
      p50.push(summary.p50);
      p99.push(summary.p99);
      max.push(summary.max);
      log(
        `${label}, run ${run}/${runs}: ${events} commits, ${formatLatencies(summary)}; ` +
          `server CPU per commit ${formatMs(serverCpu.at(-1) ?? NaN)} ` +
          `(writer ${formatMs(writerCpu.at(-1) ?? NaN)})`,
      );
      // The next run starts with every client parked again.
      await sleep(500);
    }
    return {
      transport,
      instances: sluices.length,
      clients,
      eventsPerRun: events,
      commitsPerS: 1_000 / COMMIT_INTERVAL_MS,
      p50Ms: median(p50),
      p99Ms: median(p99),
      maxMs: median(max),
      samplesPerRun,
      serverCpuPerEventMs: serverCpu.length > 0 ? median(serverCpu) : undefined,
      writerCpuPerEventMs: writerCpu.length > 0 ? median(writerCpu) : undefined,
      insertRoundTripMs: median(insertRoundTrips),
    };
  } finally {
    for (const poller of pollers) poller.stop();
    agent.destroy();
  }
}
