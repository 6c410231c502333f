import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BreakerPhase, ServerState } from '@sluice/protocol';
import type { DatabaseStates } from '../db/query-executor.js';
import type { StatusMonitor } from './status-monitor.js';

const STATES: ServerState[] = ['starting', 'live', 'fallback', 'unavailable'];
const BREAKER_PHASES: BreakerPhase[] = ['closed', 'open', 'half_open'];
/** `sluice_storage_breaker_state`: one number per phase, so that a graph shows it as one line. */
const STORAGE_BREAKER_VALUES: Record<BreakerPhase, number> = { closed: 0, half_open: 1, open: 2 };

/**
 * What an HTTP request was, for `sluice_http_*` (docs/operations.md): a fixed set, so that no
 * request can add series. `initial`, `catch-up`, `live`, `live-sse` (an SSE stream) and `now`
 * are shape reads answered from a log; `subset` a subset snapshot (GET or POST); `fallback` any
 * shape answer marked fallback mode; `must-refetch` a 409; `delete` a `DELETE /v1/shape`;
 * `other` every other request, shape requests refused before they were understood (invalid,
 * unauthorised) included.
 */
export type RequestKind =
  | 'initial'
  | 'catch-up'
  | 'live'
  | 'live-sse'
  | 'now'
  | 'subset'
  | 'fallback'
  | 'must-refetch'
  | 'delete'
  | 'other';

/** What the shape logs amount to, read at scrape time. */
export interface ShapeTotals {
  shapes: number;
  /** What the shape logs hold (ShapeLog.sizeBytes), not a walk of the storage. */
  logBytes: number;
}

/** Request durations, in seconds: long-polls last up to the long-poll timeout (20 s default). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];

/**
 * What `/metrics` exposes (Prometheus text, prom-client). One registry per app rather than
 * prom-client's global one, so several servers in one process (the tests) do not collide.
 */
export class SluiceMetrics {
  readonly registry = new Registry();
  readonly fallbackQueries: Counter;
  readonly fallbackCoalesced: Counter;
  readonly fallbackRejected: Counter;
  readonly dbRetries: Counter<'database' | 'class'>;
  readonly dbStaleConnections: Counter<'database'>;
  readonly dbAttempts: Counter<'database' | 'outcome'>;
  readonly dbBreakerTransitions: Counter<'database' | 'to'>;
  readonly httpRequests: Counter<'route' | 'method' | 'status' | 'kind'>;
  readonly httpDuration: Histogram<'route' | 'method' | 'status' | 'kind'>;
  readonly longPollsHeld: Gauge;

  /**
   * `databases` and `shapes` are read at scrape time (the query executor and the shape registry
   * are built after the metrics).
   */
  constructor(status: StatusMonitor, databases: () => DatabaseStates, shapes: () => ShapeTotals) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'sluice_' });
    new Gauge({
      name: 'sluice_state',
      help: 'Server state: 1 for the current one of starting, live, fallback, unavailable',
      labelNames: ['state'],
      registers,
      collect() {
        const current = status.current().state;
        for (const state of STATES) this.set({ state }, state === current ? 1 : 0);
      },
    });
    const transitions = new Counter({
      name: 'sluice_state_transitions_total',
      help: 'State changes, by previous and new state',
      labelNames: ['from', 'to'],
      registers,
    });
    status.onChange(({ from, to }) => transitions.inc({ from, to }));
    new Gauge({
      name: 'sluice_replication_lag_bytes',
      help: 'WAL written by Postgres that the slot has not confirmed (last probe)',
      registers,
      collect() {
        const lag = status.document().replication.lag_bytes;
        if (lag === null)
          this.reset(); // no slot, or not probed: no stale figure
        else this.set(lag);
      },
    });
    new Gauge({
      name: 'sluice_slot_retained_wal_bytes',
      help: 'WAL Postgres keeps for the slot (last probe)',
      registers,
      collect() {
        const retained = status.document().replication.retained_wal_bytes;
        if (retained === null) this.reset();
        else this.set(retained);
      },
    });
    this.fallbackQueries = new Counter({
      name: 'sluice_fallback_queries_total',
      help: 'Shape queries run against Postgres in fallback mode',
      registers,
    });
    this.fallbackCoalesced = new Counter({
      name: 'sluice_fallback_queries_coalesced_total',
      help: 'Fallback requests answered by a query already running or just run',
      registers,
    });
    this.fallbackRejected = new Counter({
      name: 'sluice_fallback_rejected_total',
      help: 'Fallback requests refused with 503 because too many queries were running',
      registers,
    });
    new Gauge({
      name: 'sluice_db_breaker_state',
      help: 'Circuit breaker of each database: 1 for its current phase of closed, open, half_open',
      labelNames: ['database', 'state'],
      registers,
      collect() {
        this.reset();
        const { primary, replica } = databases();
        for (const [database, target] of [
          ['primary', primary],
          ['replica', replica],
        ] as const) {
          if (!target) continue;
          for (const state of BREAKER_PHASES)
            this.set({ database, state }, state === target.breaker ? 1 : 0);
        }
      },
    });
    this.dbRetries = new Counter({
      name: 'sluice_db_retries_total',
      help: 'Queries tried again after a transient failure, by database and error class',
      labelNames: ['database', 'class'],
      registers,
    });
    this.dbAttempts = new Counter({
      name: 'sluice_db_attempts_total',
      help: 'Query attempts that got a connection, by database and outcome (ok, failed)',
      labelNames: ['database', 'outcome'],
      registers,
    });
    this.dbBreakerTransitions = new Counter({
      name: 'sluice_db_breaker_transitions_total',
      help: 'Circuit breaker changes, by database and new phase',
      labelNames: ['database', 'to'],
      registers,
    });
    this.dbStaleConnections = new Counter({
      name: 'sluice_db_stale_connections_total',
      help: 'Pooled connections that failed validation after sitting idle and were discarded',
      labelNames: ['database'],
      registers,
    });
    // Labels come from the server, never from the URL: the route's pattern, the status sent.
    const httpLabels = ['route', 'method', 'status', 'kind'] as const;
    this.httpRequests = new Counter({
      name: 'sluice_http_requests_total',
      help: 'HTTP requests answered, by route pattern, method, status and kind',
      labelNames: httpLabels,
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'sluice_http_request_duration_seconds',
      help: 'Time from a request to the end of its answer, by route pattern, method, status and kind',
      labelNames: httpLabels,
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.longPollsHeld = new Gauge({
      name: 'sluice_http_long_polls_held',
      help: 'Live shape requests being answered or held open until something changes',
      registers,
    });
    new Gauge({
      name: 'sluice_shapes',
      help: 'Shapes the server holds',
      registers,
      collect() {
        this.set(shapes().shapes);
      },
    });
    new Gauge({
      name: 'sluice_shape_log_bytes',
      help: 'Bytes of the shape logs on disk, appended but not yet flushed included',
      registers,
      collect() {
        this.set(shapes().logBytes);
      },
    });
    // The storage as /v1/status shows it; reset first, so a series carries only the backend used.
    new Gauge({
      name: 'sluice_storage_up',
      help: 'Whether the shape storage answers (1) or not (0), by backend (disk, redis)',
      labelNames: ['backend'],
      registers,
      collect() {
        const { backend, state } = status.document().storage;
        this.reset();
        this.set({ backend }, state === 'up' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'sluice_storage_breaker_state',
      help: 'Circuit breaker in front of the shape storage: 0 closed, 1 half-open, 2 open',
      labelNames: ['backend'],
      registers,
      collect() {
        const { backend, breaker } = status.document().storage;
        this.reset();
        this.set({ backend }, STORAGE_BREAKER_VALUES[breaker]);
      },
    });
  }
}
