import http from 'node:http';
import pg from 'pg';
import { HEADERS, PATHS } from '@sluice/protocol';
import type { TestPostgres } from '@sluice/harness';
import {
  removeStorage,
  startBenchSluice,
  waitUntilHealthy,
  type BenchSluice,
} from './bench-sluice.js';
import { createLongPoller, type LongPoller, type LongPollerKind } from './long-pollers.js';
import { createWsSubscriber } from './ws-subscribers.js';
import {
  cpuMs,
  expectStatus,
  forEachConcurrently,
  formatMs,
  header,
  httpRequest,
  log,
  median,
  ownCpuMs,
  percentile,
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
export type LiveTransport = 'long-poll' | 'websocket';

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
}

const TABLE = 'bench_live';
/** Events before each run's measured ones, not counted (JIT, connection warm-up). */
const WARMUP_EVENTS = 3;
/** A client that has not seen an event after this long is a failure, not a slow sample. */
const EVENT_TIMEOUT_MS = 15_000;

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
      const setups: [LiveTransport, number][] = [
        ['long-poll', many],
        ['websocket', many],
        ['long-poll', most],
        ['websocket', most],
        ['long-poll', 1],
        ['websocket', 1],
      ];
      const results: LatencyResult[] = [];
      let nextId = 1;
      for (const [transport, clients] of setups) {
        // A server of its own per setup: its memory before the clients is a clean baseline.
        const sluice = await startBenchSluice(db, {
          // Every client connects from this one address.
          env: {
            SLUICE_MAX_CONCURRENT_LIVE: String(clients + 1_000),
            SLUICE_MAX_LIVE_PER_CLIENT: String(clients + 1_000),
            SLUICE_WS_MAX_SOCKETS: String(clients + 1_000),
          },
        });
        try {
          await waitUntilHealthy(sluice.baseUrl);
          const setup = { transport, clients, events, runs: config.runs, firstId: nextId, kind };
          results.push(await measure(sluice, writer, setup));
          nextId += (events + WARMUP_EVENTS) * config.runs;
        } finally {
          await sluice.stop();
          await removeStorage(sluice.storageDir);
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

interface Setup {
  transport: LiveTransport;
  clients: number;
  events: number;
  runs: number;
  firstId: number;
  kind: LongPollerKind;
}

async function measure(
  sluice: BenchSluice,
  writer: pg.Client,
  { transport, clients, events, runs, firstId, kind }: Setup,
): Promise<LatencyResult> {
  const base = `${sluice.baseUrl}${PATHS.shape}?table=${TABLE}`;
  // Where the clients start: the end of the shape's log, reached as any client would.
  let response = await httpRequest(`${base}&offset=-1`);
  expectStatus(response, 200, 'initial request');
  const handle = header(response, HEADERS.handle) ?? '';
  while (header(response, HEADERS.upToDate) === undefined) {
    response = await httpRequest(
      `${base}&handle=${handle}&offset=${header(response, HEADERS.offset)}`,
    );
    expectStatus(response, 200, 'catch-up request');
  }
  const startOffset = header(response, HEADERS.offset) ?? '';
  await sleep(500);
  const rssBeforeKb = await rssKb(sluice.pid);

  const agent = new http.Agent({ keepAlive: true, maxSockets: clients + 100 });
  const pollers: LongPoller[] = Array.from({ length: clients }, () =>
    transport === 'websocket'
      ? createWsSubscriber(sluice.baseUrl, TABLE, handle, startOffset)
      : createLongPoller(
          kind,
          sluice.baseUrl,
          `${PATHS.shape}?table=${TABLE}&handle=${handle}`,
          startOffset,
          agent,
        ),
  );
  const label = `${clients} ${transport === 'websocket' ? 'WebSocket subscriber' : 'long-poll client'}${clients === 1 ? '' : 's'}`;
  try {
    // Connected a few at a time (a burst of 1,000 SYNs can overflow the listen backlog).
    await forEachConcurrently(pollers, 50, (poller) => poller.start());
    // Every request parked (every subscription registered) on the server.
    await sleep(clients > 100 ? Math.max(2_000, clients / 2) : 300);
    const rssIdleKb = await rssKb(sluice.pid);
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
      const serverBefore = await cpuMs(sluice.pid);
      const clientBefore = ownCpuMs();
      for (let event = 0; event < WARMUP_EVENTS + events; event++) {
        const eventId = id++;
        // The reference is taken just before the autocommit INSERT is sent: the commit happens
        // within its round trip, so this errs against Sluice by at most that round trip, never
        // for it (the writer's own callback can run after a client has already seen the row).
        const committedAt = performance.now();
        await writer.query(`INSERT INTO ${TABLE} (id) VALUES ($1)`, [eventId]);
        if (event >= WARMUP_EVENTS) insertRoundTrips.push(performance.now() - committedAt);
        const deadline = committedAt + EVENT_TIMEOUT_MS;
        // The wait shares the two cores with the server and the clients: each tick looks on from
        // the first client still without the event (O(N) per event in all, not per tick), and
        // every client's failure is looked at only every 100 ms.
        let waiting = 0;
        let checkedFailures = committedAt;
        for (;;) {
          while (waiting < pollers.length && pollers[waiting]!.received.has(eventId)) waiting++;
          if (waiting === pollers.length) break;
          const now = performance.now();
          if (now - checkedFailures > 100) {
            for (const poller of pollers) if (poller.failure) throw poller.failure;
            checkedFailures = now;
          }
          if (now > deadline) {
            const missing = pollers.filter((poller) => !poller.received.has(eventId)).length;
            throw new Error(`${missing} of ${clients} clients did not get event ${eventId}`);
          }
          await sleep(1);
        }
        if (event >= WARMUP_EVENTS) {
          for (const poller of pollers) latencies.push(poller.received.get(eventId)! - committedAt);
        }
        if (run === 1 && event === WARMUP_EVENTS) {
          const kb = await rssKb(sluice.pid);
          serverRssMb = kb === undefined ? undefined : Math.round(kb / 1024);
        }
        // Let every client's next long-poll reach the server before the next commit (WebSocket
        // subscribers need no such pause; they get the same pacing, to compare like with like).
        await sleep(clients > 100 ? Math.max(250, clients / 10) : 50);
      }
      const serverAfter = await cpuMs(sluice.pid);
      const perEvent = (ms: number) => ms / (WARMUP_EVENTS + events);
      clientCpu.push(perEvent(ownCpuMs() - clientBefore));
      if (serverBefore !== undefined && serverAfter !== undefined) {
        serverCpu.push(perEvent(serverAfter - serverBefore));
      }
      samplesPerRun = latencies.length;
      p50.push(percentile(latencies, 50));
      p99.push(percentile(latencies, 99));
      // No spread: 300,000 samples (10,000 clients) overflow the call stack as arguments.
      const lowest = latencies.reduce((a, b) => Math.min(a, b), Infinity);
      max.push(latencies.reduce((a, b) => Math.max(a, b), -Infinity));
      log(
        `${label}, run ${run}/${runs}: ${events} commits, ` +
          `${latencies.length} samples: p50 ${formatMs(p50.at(-1)!)}, p99 ${formatMs(p99.at(-1)!)}, ` +
          `max ${formatMs(max.at(-1)!)}, min ${formatMs(lowest)}; CPU per commit: ` +
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
