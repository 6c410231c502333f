import type { FallbackQueries } from '../shapes/fallback-queries.js';
import type { ShapeRegistry } from '../shapes/shape-registry.js';
import type { SubsetQueries } from '../shapes/subset-query.js';
import type { StatusMonitor } from '../status/status-monitor.js';
import type { CacheAges } from './cache-policy.js';

/** What shape answers need to know of replication's progress. */
export interface ReplicationProgress {
  /** The replication position every shape has durably seen (`global_last_seen_lsn`). */
  lastSeenLsn(): bigint;
  /** False until replication has told whether stored shape logs continue the stream. */
  continuityChecked(timeoutMs: number): Promise<boolean>;
  /** Whether `continuityChecked` would resolve true at once. */
  continuityKnown(): boolean;
}

/** How live requests are held. */
export interface LongPoll {
  timeoutMs: number;
  /**
   * Aborted when the server closes: held requests are then answered at once
   * (docs/architecture.md invariant 7).
   */
  closing: AbortSignal;
}

/** How SSE live streams are kept (docs/protocol.md §3.9). */
export interface SseTiming {
  /** A stream is ended after this long; the client reconnects. */
  timeoutMs: number;
  /** A comment is sent after this long without anything else, so no proxy finds it idle. */
  keepAliveMs: number;
}

/** What shape answers are made of besides the request, whatever transport carries them. */
export interface ShapeAnswerContext {
  registry: ShapeRegistry;
  /** Shapes' rows straight from Postgres while replication is down (docs/protocol.md §7). */
  fallback: FallbackQueries;
  /** Subset snapshots, read from Postgres whatever the state (docs/protocol.md §3.10). */
  subsets: SubsetQueries;
  status: StatusMonitor;
  replication: ReplicationProgress;
  longPoll: LongPoll;
  sse: SseTiming;
  cache: CacheAges;
}

/** Replication is down (fallback or unavailable): answers are fallback answers, marked as such. */
export function isDegraded(status: StatusMonitor): boolean {
  const { state } = status.current();
  return state === 'fallback' || state === 'unavailable';
}
