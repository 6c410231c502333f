import type http from 'node:http';
import { HEADERS, PATHS } from '@sluice/protocol';
import { expectStatus, formatMs, header, httpRequest, percentile, sleep } from './bench-support.js';
import { createLongPoller, type LongPoller, type LongPollerKind } from './long-pollers.js';
import { createWsSubscriber } from './ws-subscribers.js';

/**
 * What the live-latency measures (3, latency-bench.ts; 8, scaleout-bench.ts) share: where a
 * shape's clients start, the clients themselves over either transport, and the wait for every
 * client to have a committed row.
 */
export type LiveTransport = 'long-poll' | 'websocket';

/** One (transport, client count) of a live measure: `runs` runs of `events` commits each. */
export interface LiveSetup {
  transport: LiveTransport;
  clients: number;
  events: number;
  runs: number;
  /** The first row id to commit (ids are never reused within a table). */
  firstId: number;
}

/** Events before each run's measured ones, not counted (JIT, connection warm-up). */
export const WARMUP_EVENTS = 3;
/** A client that has not seen an event after this long is a failure, not a slow sample. */
export const EVENT_TIMEOUT_MS = 15_000;

/**
 * Server limits raised above the bench's client count: every client connects from this one
 * address, which the defaults would cap.
 */
export function liveLimitsEnv(clients: number): Record<string, string> {
  const limit = String(clients + 1_000);
  return {
    SLUICE_MAX_CONCURRENT_LIVE: limit,
    SLUICE_MAX_LIVE_PER_CLIENT: limit,
    SLUICE_WS_MAX_SOCKETS: limit,
  };
}

/** The shape of `table` on a server, and the end of its log, reached as any client would. */
export async function catchUpToEnd(
  baseUrl: string,
  table: string,
): Promise<{ handle: string; offset: string }> {
  const base = `${baseUrl}${PATHS.shape}?table=${table}`;
  let response = await httpRequest(`${base}&offset=-1`);
  expectStatus(response, 200, 'initial request');
  const handle = header(response, HEADERS.handle) ?? '';
  while (header(response, HEADERS.upToDate) === undefined) {
    response = await httpRequest(
      `${base}&handle=${handle}&offset=${header(response, HEADERS.offset)}`,
    );
    expectStatus(response, 200, 'catch-up request');
  }
  return { handle, offset: header(response, HEADERS.offset) ?? '' };
}

export interface LiveClientSpec {
  transport: LiveTransport;
  /** The long-poll client (ignored for WebSockets). */
  kind: LongPollerKind;
  baseUrl: string;
  table: string;
  handle: string;
  offset: string;
  /** node:http long-poll clients' agent. */
  agent: http.Agent;
}

/** One client (not started) of the shape from (handle, offset), over the transport asked for. */
export function createLiveClient(spec: LiveClientSpec): LongPoller {
  const { transport, kind, baseUrl, table, handle, offset, agent } = spec;
  return transport === 'websocket'
    ? createWsSubscriber(baseUrl, table, handle, offset)
    : createLongPoller(kind, baseUrl, table, handle, offset, agent);
}

export function describeClients(transport: LiveTransport, clients: number): string {
  const who = transport === 'websocket' ? 'WebSocket subscriber' : 'long-poll client';
  return `${clients} ${who}${clients === 1 ? '' : 's'}`;
}

/**
 * Resolves once every client has the row `eventId`; throws when a client failed, or when some
 * still lack it at `deadline` (performance.now()).
 */
export async function waitForEvent(
  clients: readonly LongPoller[],
  eventId: number,
  deadline: number,
): Promise<void> {
  // The wait shares the two cores with the servers and the clients: each tick looks on from the
  // first client still without the event (O(N) per event in all, not per tick), and every
  // client's failure is looked at only every 100 ms.
  let waiting = 0;
  let checkedFailures = performance.now();
  for (;;) {
    while (waiting < clients.length && clients[waiting]!.received.has(eventId)) waiting++;
    if (waiting === clients.length) return;
    const now = performance.now();
    if (now - checkedFailures > 100) {
      throwIfFailed(clients);
      checkedFailures = now;
    }
    if (now > deadline) {
      const missing = clients.filter((client) => !client.received.has(eventId)).length;
      throw new Error(`${missing} of ${clients.length} clients did not get event ${eventId}`);
    }
    await sleep(1);
  }
}

export function throwIfFailed(clients: readonly LongPoller[]): void {
  for (const client of clients) if (client.failure) throw client.failure;
}

export interface LatencySummary {
  samples: number;
  p50: number;
  p99: number;
  max: number;
  min: number;
}

/** One run's samples summed up (the report shows medians over runs of these). */
export function summarizeLatencies(latencies: readonly number[]): LatencySummary {
  return {
    samples: latencies.length,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    // No spread: 300,000 samples (10,000 clients) overflow the call stack as arguments.
    max: latencies.reduce((a, b) => Math.max(a, b), -Infinity),
    min: latencies.reduce((a, b) => Math.min(a, b), Infinity),
  };
}

export function formatLatencies({ samples, p50, p99, max, min }: LatencySummary): string {
  return (
    `${samples} samples: p50 ${formatMs(p50)}, p99 ${formatMs(p99)}, ` +
    `max ${formatMs(max)}, min ${formatMs(min)}`
  );
}
