import type { FallbackQueries } from '../shapes/fallback-queries.js';
import type { ShapeRegistry } from '../shapes/shape-registry.js';
import type { StatusMonitor } from '../status/status-monitor.js';
import type { CacheAges } from './cache-policy.js';

/** What shape answers need to know of replication's progress. */
export interface ReplicationProgress {
  /** The replication position every shape has durably seen (`global_last_seen_lsn`). */
  lastSeenLsn(): bigint;
  /** False until replication has told whether stored shape logs continue the stream. */
  continuityChecked(timeoutMs: number): Promise<boolean>;
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

/** What shape answers are made of besides the request, whatever transport carries them. */
export interface ShapeAnswerContext {
  registry: ShapeRegistry;
  /** Shapes' rows straight from Postgres while replication is down (docs/protocol.md §7). */
  fallback: FallbackQueries;
  status: StatusMonitor;
  replication: ReplicationProgress;
  longPoll: LongPoll;
  cache: CacheAges;
}

/** Replication is down (fallback or unavailable): answers are fallback answers, marked as such. */
export function isDegraded(status: StatusMonitor): boolean {
  const { state } = status.current();
  return state === 'fallback' || state === 'unavailable';
}
