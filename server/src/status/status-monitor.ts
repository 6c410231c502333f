import type { BreakerPhase, ReplicationPhase, ServerState, StatusDocument } from '@sluice/protocol';
import type { Problem } from '../pg/describe-problem.js';
import type { StorageHealth } from '../storage/shape-storage.js';

export type DatabaseHealth = 'unknown' | 'up' | 'down';

/** What the query executor last saw of its databases (`database` in `/v1/status`). */
export interface QueryDatabases {
  replica: 'up' | 'down' | 'none';
  /** The primary's circuit breaker. */
  breaker: BreakerPhase;
}

/** The facts the state is decided from; each reported by the subsystem that observes it. */
export interface StatusInputs {
  replication: ReplicationPhase;
  /** False until the first replication attempt has streamed or failed. */
  attempted: boolean;
  database: DatabaseHealth;
  /** Whether the shape storage answers (Redis can be down while Postgres is not). */
  storage: 'up' | 'down';
  /**
   * This server reads a shared storage that another writes (docs/operations.md, "Several
   * servers"): its logs are as current as that writer's, which must be heard from and streaming.
   */
  reading: boolean;
  /** While `reading`: the writer beats, and streams replication. */
  writerLive: boolean;
}

/**
 * The server's state from what the subsystems observed (docs/protocol.md §7): live while replication
 * streams into a storage that answers; otherwise unavailable when the database does not answer, starting while the very
 * first attempt is still under way, and fallback in every other case. A database not probed yet
 * counts as answering: the first query that fails says otherwise.
 */
export function decideState(inputs: StatusInputs): ServerState {
  const streaming = inputs.reading ? inputs.writerLive : inputs.replication === 'streaming';
  if (streaming && inputs.storage === 'up') return 'live';
  if (inputs.database === 'down') return 'unavailable';
  if (!inputs.attempted) return 'starting';
  return 'fallback';
}

export interface StateChange {
  from: ServerState;
  to: ServerState;
  cause: string;
  at: Date;
}

export interface CurrentState {
  state: ServerState;
  since: Date;
  cause: string;
}

export interface StatusMonitorOptions {
  slotName: string;
  /** How many shapes the server holds, read when the document is built. */
  shapeCount(): number;
  /** The shape storage's health (`ShapeStorage.health()`), read when the document is built. */
  storageHealth(): StorageHealth;
  log?: {
    info(object: object, message: string): void;
    warn(object: object, message: string): void;
  };
}

/**
 * The single place that decides the server's state (docs/architecture.md invariant 5). Subsystems report
 * what they observe; the state follows from those facts through `decideState`. HTTP handlers
 * read `current()` and `document()`, never the database. Each change is logged once with its
 * cause and passed to listeners (metrics, held requests).
 */
export class StatusMonitor {
  readonly #options: StatusMonitorOptions;
  readonly #inputs: StatusInputs = {
    replication: 'connecting',
    attempted: false,
    database: 'unknown',
    storage: 'up',
    reading: false,
    writerLive: false,
  };
  #current: CurrentState = { state: 'starting', since: new Date(), cause: 'server starting' };
  #lastError: (Problem & { at: string }) | null = null;
  #nextRetryAt: Date | null = null;
  #lagBytes: number | null = null;
  #retainedBytes: number | null = null;
  #databases: QueryDatabases = { replica: 'none', breaker: 'closed' };
  #storageServers: { instance: string | null; writer: string | null } = {
    instance: null,
    writer: null,
  };
  readonly #listeners = new Set<(change: StateChange) => void>();

  constructor(options: StatusMonitorOptions) {
    this.#options = options;
  }

  current(): CurrentState {
    return this.#current;
  }

  get inputs(): Readonly<StatusInputs> {
    return this.#inputs;
  }

  /** Calls `listener` on every state change; returns the function that stops it. */
  onChange(listener: (change: StateChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** A replication connection attempt began. */
  replicationConnecting(): void {
    this.#inputs.replication = 'connecting';
    this.#nextRetryAt = null;
    this.#decide('replication connecting');
  }

  /** Streaming also proves the database answers. */
  replicationStreaming(): void {
    this.#inputs.replication = 'streaming';
    this.#inputs.attempted = true;
    this.#inputs.database = 'up';
    this.#nextRetryAt = null;
    this.#decide('replication streaming');
  }

  /** The stream failed or could not start; the next attempt is due at `nextRetryAt`. */
  replicationFailed(problem: Problem, nextRetryAt: Date): void {
    this.#inputs.replication = 'backoff';
    this.#inputs.attempted = true;
    this.#nextRetryAt = nextRetryAt;
    this.#recordError(problem);
    this.#decide(`replication stopped: ${problem.code} ${problem.message}`);
  }

  /**
   * The slot is held by another server sharing this one's storage: this one reads what that
   * server writes, not a server in fallback. Its own replication does not decide its state: it
   * stays `starting` until it has loaded the shapes and heard the writer (`readingFrom`).
   */
  replicationStandby(problem: Problem, nextRetryAt: Date): void {
    this.#inputs.replication = 'backoff';
    this.#nextRetryAt = nextRetryAt;
    this.#recordError(problem);
    this.#decide(`standby: ${problem.message}`);
  }

  /**
   * This server reads the shared storage another writes (it has loaded the shapes), whose writer
   * is `live` or not: heard from lately, streaming.
   */
  readingFrom(live: boolean): void {
    if (this.#inputs.reading && this.#inputs.attempted && this.#inputs.writerLive === live) return;
    this.#inputs.reading = true;
    this.#inputs.attempted = true;
    this.#inputs.writerLive = live;
    this.#decide(
      live ? 'the writing server streams' : 'the writing server is silent or not streaming',
    );
  }

  /** This server writes the shared storage now (it took the replication lock). */
  writing(): void {
    if (!this.#inputs.reading) return;
    this.#inputs.reading = false;
    this.#decide('this server writes the shared storage');
  }

  /** Something broke continuity without stopping the stream (a slot lost and made again). */
  replicationIncident(problem: Problem): void {
    this.#recordError(problem);
    this.#options.log?.warn({ code: problem.code }, problem.message);
  }

  databaseReachable(): void {
    if (this.#inputs.database === 'up') return;
    this.#inputs.database = 'up';
    this.#decide('database answers queries');
  }

  databaseUnreachable(problem: Problem): void {
    if (this.#inputs.database === 'down') return;
    this.#inputs.database = 'down';
    this.#decide(`database unreachable: ${problem.code} ${problem.message}`);
  }

  /** The shape storage answers again (it starts as answering: the first failure says otherwise). */
  storageReachable(): void {
    if (this.#inputs.storage === 'up') return;
    this.#inputs.storage = 'up';
    this.#decide('shape storage answers');
  }

  /** The shape storage stopped answering: its logs can be neither written nor read. */
  storageUnreachable(): void {
    if (this.#inputs.storage === 'down') return;
    this.#inputs.storage = 'down';
    this.#decide(`shape storage (${this.#options.storageHealth().backend}) unreachable`);
  }

  /**
   * The replica's health and the primary's breaker, from the query executor. They are shown, not
   * decided on: the probe alone says whether the database answers.
   */
  reportQueryDatabases(databases: QueryDatabases): void {
    this.#databases = { ...databases };
  }

  /** Over a shared storage: this server's id, and the id of the one that writes it. */
  reportStorageServers(instance: string, writer: string | null): void {
    this.#storageServers = { instance, writer };
  }

  /** Bytes of WAL the slot has not confirmed, and bytes it keeps Postgres from recycling. */
  reportSlotPositions(lagBytes: number | null, retainedBytes: number | null): void {
    this.#lagBytes = lagBytes;
    this.#retainedBytes = retainedBytes;
  }

  document(): StatusDocument {
    const { state, since } = this.#current;
    return {
      status: state,
      replication_available: state === 'live',
      since: since.toISOString(),
      replication: {
        state: this.#inputs.replication,
        slot: this.#options.slotName,
        lag_bytes: this.#lagBytes,
        retained_wal_bytes: this.#retainedBytes,
        last_error: this.#lastError,
        next_retry_at: this.#nextRetryAt?.toISOString() ?? null,
      },
      database: {
        primary: this.#inputs.database === 'down' ? 'down' : 'up',
        ...this.#databases,
      },
      shapes: {
        state: state === 'live' ? 'up' : state === 'starting' ? 'starting' : 'read_only',
        count: this.#options.shapeCount(),
      },
      storage: { ...storageDocument(this.#options.storageHealth()), ...this.#storageServers },
    };
  }

  #recordError(problem: Problem): void {
    this.#lastError = { ...problem, at: new Date().toISOString() };
  }

  #decide(cause: string): void {
    const to = decideState(this.#inputs);
    const from = this.#current.state;
    if (to === from) return;
    const at = new Date();
    this.#current = { state: to, since: at, cause };
    const level = to === 'live' || (from === 'starting' && to !== 'unavailable') ? 'info' : 'warn';
    this.#options.log?.[level]({ from, to, cause }, `server state ${from} → ${to}`);
    for (const listener of this.#listeners) {
      // A failing listener must not fail whoever reported the fact (the replication loop).
      try {
        listener({ from, to, cause, at });
      } catch (error) {
        this.#options.log?.warn({ err: error }, 'a state change listener failed');
      }
    }
  }
}

/** The storage's health as `/v1/status` spells it: breaker phases as `database.breaker` does. */
function storageDocument(
  health: StorageHealth,
): Pick<StatusDocument['storage'], 'backend' | 'state' | 'breaker'> {
  const breaker = health.breaker === 'half-open' ? 'half_open' : health.breaker;
  return { backend: health.backend, state: health.state, breaker };
}
