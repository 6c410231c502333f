import http from 'node:http';
import pg from 'pg';
import type { TestPostgres } from '@sluice/harness';
import {
  removeStorage,
  startBenchSluice,
  waitUntilHealthy,
  type BenchSluice,
} from './bench-sluice.js';
import {
  catchUpToEnd,
  createLiveClient,
  describeClients,
  EVENT_TIMEOUT_MS,
  formatLatencies,
  liveLimitsEnv,
  summarizeLatencies,
  WARMUP_EVENTS,
  waitForEvent,
  type LiveSetup,
  type LiveTransport,
} from './live-clients.js';
import { startFloorServer } from './floor-server.js';
import type { LongPoller, LongPollerKind } from './long-pollers.js';
import {
  cpuMs,
  forEachConcurrently,
  formatMs,
  log,
  median,
  ownCpuMs,
  rssKb,
  scaled,
  sleep,
  type BenchConfig,
} from './bench-support.js';

/**
 * Measure 3: commit → client latency with N concurrent clients of one shape, over long-polls and
 * over WebSockets in the same run. Each event is one autocommit INSERT; its reference time is
 * taken just before the INSERT is sent (performance.now() in this process, the same clock the
 * clients stamp with when the last byte of their response or frame arrives). Long-poll clients
 * are raw `live=true` requests, each on its own keep-alive connection, re-polling as soon as a
 * response arrives (see long-pollers.ts); WebSocket subscribers each hold their own socket with
 * one subscription (ws-subscribers.ts). Every (transport, N) gets a fresh server process, so
 * its memory before and with the idle clients can be compared.
 */
export interface LatencyResult {
  transport: LiveTransport;
  clients: number;
  eventsPerRun: number;
  /** Medians over runs of each run's percentile over all client × event samples. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  samplesPerRun: number;
  serverRssMb: number | undefined;
  /**
   * Server RSS with every client connected and idle, minus before any connected, per client
   * (kB; garbage not yet collected included, so an upper bound).
   */
  idleKbPerClient: number | undefined;
  /** Median over runs of the server's CPU time per commit (all clients served). */
  serverCpuPerEventMs: number | undefined;
  /** The same for this process (the clients). */
  clientCpuPerEventMs: number;
  /** Median round trip of the INSERT (included in every sample). */
  insertRoundTripMs: number;
  client: LongPollerKind;
  /**
   * The same clients, pacing and runs against the floor (fan-out-floor-server.ts): the least a
   * Node process needs on this machine to deliver a row to that many clients.
   */
  floor?: Measured;
}

/** What one target's runs measured. */
type Measured = Omit<LatencyResult, 'floor'>;

const TABLE = 'bench_live';

export async function benchLatency(
  postgres: TestPostgres,
  config: BenchConfig,
): Promise<LatencyResult[]> {
  const many = scaled(config, 1_000, 10);
  const most = scaled(config, 10_000, 100);
  const kind = (process.env.BENCH_LATENCY_CLIENT ?? 'raw') as LongPollerKind;
  if (kind !== 'raw' && kind !== 'http') {
    throw new Error(`BENCH_LATENCY_CLIENT must be raw or http, got "${String(kind)}"`);
  }
  const events = scaled(config, 30, 10);
  log(
    `\n## 3. Commit → client latency on one shape: long-polls (${kind} HTTP clients) and WebSockets`,
  );
  const db = await postgres.createDatabase('bench_latency');
  try {
    await db.query(
      `CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, ts timestamptz NOT NULL DEFAULT clock_timestamp(),
                              note text NOT NULL DEFAULT 'latency probe')`,
    );
    const writer = new pg.Client({ connectionString: db.url });
    await writer.connect();
    try {
      const setups = latencySetups(many, most);
      const results: LatencyResult[] = [];
      let nextId = 1;
      for (const [transport, clients] of setups) {
        const setup = { transport, clients, events, runs: config.runs, firstId: nextId, kind };
        // A server of its own per setup: its memory before the clients is a clean baseline.
        const sluice = await startBenchSluice(db, {
          env: liveLimitsEnv(clients),
        });
        try {
          await waitUntilHealthy(sluice.baseUrl);
          results.push(await measure(await sluiceTarget(sluice, writer), setup));
          nextId += (events + WARMUP_EVENTS) * config.runs;
        } finally {
          await sluice.stop();
          await removeStorage(sluice.storageDir);
        }
        // The floor, with the same clients, pacing and runs, right after (same machine state).
        const floor = await startFloorServer(TABLE);
        try {
          log(`${describeClients(transport, clients)}: the floor (bare node:http and ws)`);
          // Fresh clients and no table: the same row ids as Sluice's runs do.
          results.at(-1)!.floor = await measure(floor, setup);
        } finally {
          await floor.stop();
        }
      }
      return results;
    } finally {
      await writer.end();
    }
  } finally {
    await db.drop();
  }
}

/**
 * The (transport, clients) pairs to measure: all six by default, or those BENCH_LATENCY_SETUPS
 * names (for example `websocket:1000,long-poll:1000`, to profile one of them).
 */
function latencySetups(many: number, most: number): [LiveTransport, number][] {
  const named = process.env.BENCH_LATENCY_SETUPS;
  if (named === undefined || named === '') {
    return [
      ['long-poll', many],
      ['websocket', many],
      ['long-poll', most],
      ['websocket', most],
      ['long-poll', 1],
      ['websocket', 1],
    ];
  }
  return named.split(',').map((pair) => {
    const [transport, count] = pair.trim().split(':');
    const clients = Number(count);
    if (
      (transport !== 'long-poll' && transport !== 'websocket') ||
      !Number.isInteger(clients) ||
      clients < 1
    ) {
      throw new Error(`BENCH_LATENCY_SETUPS: "${pair}" is not <long-poll|websocket>:<clients>`);
    }
    return [transport, clients];
  });
}

interface Setup extends LiveSetup {
  kind: LongPollerKind;
}

/** What the clients follow: Sluice, or the floor (fan-out-floor-server.ts). */
interface Target {
  baseUrl: string;
  pid: number | undefined;
  /** Where the clients start. */
  handle: string;
  offset: string;
  /** Makes row `id` happen: an autocommit INSERT for Sluice, `POST /fire` for the floor. */
  fire(id: number): Promise<void>;
}

async function sluiceTarget(sluice: BenchSluice, writer: pg.Client): Promise<Target> {
  return {
    baseUrl: sluice.baseUrl,
    pid: sluice.pid,
    // Where the clients start: the end of the shape's log.
    ...(await catchUpToEnd(sluice.baseUrl, TABLE)),
    async fire(id) {
      await writer.query(`INSERT INTO ${TABLE} (id) VALUES ($1)`, [id]);
    },
  };
}

async function measure(
  target: Target,
  { transport, clients, events, runs, firstId, kind }: Setup,
): Promise<Measured> {
  const { handle, offset } = target;
  await sleep(500);
  const rssBeforeKb = await rssKb(target.pid);

  const agent = new http.Agent({ keepAlive: true, maxSockets: clients + 100 });
  const spec = { transport, kind, baseUrl: target.baseUrl, table: TABLE, handle, offset, agent };
  const pollers: LongPoller[] = Array.from({ length: clients }, () => createLiveClient(spec));
  const label = describeClients(transport, clients);
  try {
    // Connected a few at a time (a burst of 1,000 SYNs can overflow the listen backlog).
    await forEachConcurrently(pollers, 50, (poller) => poller.start());
    // Every request parked (every subscription registered) on the server.
    await sleep(clients > 100 ? Math.max(2_000, clients / 2) : 300);
    const rssIdleKb = await rssKb(target.pid);
    // Below 100 clients the difference is lost in the noise of the heap's own growth.
    const idleKbPerClient =
      rssBeforeKb !== undefined && rssIdleKb !== undefined && clients >= 100
        ? (rssIdleKb - rssBeforeKb) / clients
        : undefined;
    log(
      `${label}: server RSS ${formatKb(rssBeforeKb)} before them, ${formatKb(rssIdleKb)} with them idle` +
        (idleKbPerClient === undefined ? '' : ` (${idleKbPerClient.toFixed(1)} kB each)`),
    );

    const p50: number[] = [];
    const p99: number[] = [];
    const max: number[] = [];
    let samplesPerRun = 0;
    let serverRssMb: number | undefined;
    let id = firstId;
    const serverCpu: number[] = [];
    const clientCpu: number[] = [];
    const insertRoundTrips: number[] = [];
    for (let run = 1; run <= runs; run++) {
      const latencies: number[] = [];
      const serverBefore = await cpuMs(target.pid);
      const clientBefore = ownCpuMs();
      for (let event = 0; event < WARMUP_EVENTS + events; event++) {
        const eventId = id++;
        // The reference is taken just before the autocommit INSERT is sent: the commit happens
        // within its round trip, so this errs against Sluice by at most that round trip, never
        // for it (the writer's own callback can run after a client has already seen the row).
        const committedAt = performance.now();
        await target.fire(eventId);
        if (event >= WARMUP_EVENTS) insertRoundTrips.push(performance.now() - committedAt);
        await waitForEvent(pollers, eventId, committedAt + EVENT_TIMEOUT_MS);
        if (event >= WARMUP_EVENTS) {
          for (const poller of pollers) latencies.push(poller.received.get(eventId)! - committedAt);
        }
        if (run === 1 && event === WARMUP_EVENTS) {
          const kb = await rssKb(target.pid);
          serverRssMb = kb === undefined ? undefined : Math.round(kb / 1024);
        }
        // Let every client's next long-poll reach the server before the next commit (WebSocket
        // subscribers need no such pause; they get the same pacing, to compare like with like).
        await sleep(clients > 100 ? Math.max(250, clients / 10) : 50);
      }
      const serverAfter = await cpuMs(target.pid);
      const perEvent = (ms: number) => ms / (WARMUP_EVENTS + events);
      clientCpu.push(perEvent(ownCpuMs() - clientBefore));
      if (serverBefore !== undefined && serverAfter !== undefined) {
        serverCpu.push(perEvent(serverAfter - serverBefore));
      }
      samplesPerRun = latencies.length;
      const summary = summarizeLatencies(latencies);
      p50.push(summary.p50);
      p99.push(summary.p99);
      max.push(summary.max);
      log(
        `${label}, run ${run}/${runs}: ${events} commits, ${formatLatencies(summary)}; CPU per commit: ` +
          `server ${formatMs(serverCpu.at(-1) ?? NaN)}, clients ${formatMs(clientCpu.at(-1)!)}; ` +
          `INSERT round trip ${formatMs(median(insertRoundTrips.slice(-events)))}`,
      );
    }
    return {
      transport,
      clients,
      idleKbPerClient,
      eventsPerRun: events,
      p50Ms: median(p50),
      p99Ms: median(p99),
      maxMs: median(max),
      samplesPerRun,
      serverRssMb,
      serverCpuPerEventMs: serverCpu.length > 0 ? median(serverCpu) : undefined,
      clientCpuPerEventMs: median(clientCpu),
      insertRoundTripMs: median(insertRoundTrips),
      client: kind,
    };
  } finally {
    for (const poller of pollers) poller.stop();
    agent.destroy();
  }
}

const formatKb = (kb: number | undefined): string =>
  kb === undefined ? '?' : `${(kb / 1024).toFixed(0)} MB`;
