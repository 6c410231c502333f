import type { Socket } from 'node:net';
import {
  circuitBreaker,
  CircuitState,
  ConsecutiveBreaker,
  handleWhen,
  type CircuitBreakerPolicy,
} from 'cockatiel';
import type { FastifyBaseLogger } from 'fastify';
import pg from 'pg';
import type { BreakerPhase } from '@sluice/protocol';
import { classifyDbError, DB_ERROR_POLICIES } from './classify-db-error.js';
import { QueryTimeoutError } from './database-errors.js';

export type DatabaseName = 'primary' | 'replica';

export interface DatabaseTargetOptions {
  name: DatabaseName;
  connectionString: string;
  /** libpq `options` applying the session settings (docs/protocol.md §4) on every new connection. */
  sessionOptions: string;
  poolSize: number;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  idleValidationMs: number;
  failureThreshold: number;
  resetMs: number;
  /** A connection failed validation and was thrown away. */
  onStaleConnection(name: DatabaseName): void;
  /** An attempt reached `work` and ended (pick the database's share of the load from these). */
  onAttempt(name: DatabaseName, outcome: 'ok' | 'failed'): void;
  /** The breaker moved to `phase`. */
  onBreaker(name: DatabaseName, phase: BreakerPhase): void;
  /** The breaker moved, or the database started or stopped answering. */
  onChange(): void;
  log: FastifyBaseLogger;
}

/**
 * Past the statement timeout Postgres itself ends a query; silence for this much longer means
 * the answer cannot arrive (a partition, a frozen host) and the connection is destroyed.
 */
const SILENCE_GRACE_MS = 2_000;
/** Idle pooled connections live this long, so validation (not expiry) finds the dead ones. */
const POOL_IDLE_TIMEOUT_MS = 300_000;

/**
 * One database (the primary or the replica): its pool, its circuit breaker and what it last
 * showed of its health. `attempt` is one try of a piece of work on one connection; retrying and
 * choosing between databases is `QueryExecutor`'s job.
 */
export class DatabaseTarget {
  readonly name: DatabaseName;
  readonly #options: DatabaseTargetOptions;
  readonly #pool: pg.Pool;
  readonly #breaker: CircuitBreakerPolicy;
  /** When each pooled connection was last given back: idle ones are validated before use. */
  readonly #releasedAt = new WeakMap<pg.PoolClient, number>();
  #up: boolean | undefined;

  constructor(options: DatabaseTargetOptions) {
    this.name = options.name;
    this.#options = options;
    this.#pool = new pg.Pool({
      connectionString: options.connectionString,
      // Catalog writes (publication, replica identity) are flushed when they return, whatever
      // the server's default: a shape's snapshot waits for a replica to replay them.
      options: `${options.sessionOptions} -c synchronous_commit=on`,
      max: options.poolSize,
      connectionTimeoutMillis: options.connectTimeoutMs,
      idleTimeoutMillis: POOL_IDLE_TIMEOUT_MS,
      statement_timeout: options.statementTimeoutMs,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    // An idle connection that dies (Postgres restart) emits 'error' on the pool; unhandled, it
    // would crash the process. The error carries the whole client object: log only its text.
    this.#pool.on('error', (error) =>
      options.log.warn(
        { database: this.name, code: (error as { code?: string }).code },
        `idle ${this.name} connection failed: ${error.message}`,
      ),
    );
    this.#pool.on('release', (_error: Error | undefined, client: pg.PoolClient) =>
      this.#releasedAt.set(client, Date.now()),
    );
    this.#breaker = circuitBreaker(
      handleWhen((error) => DB_ERROR_POLICIES[classifyDbError(error)].breaker),
      {
        halfOpenAfter: options.resetMs,
        breaker: new ConsecutiveBreaker(options.failureThreshold),
      },
    );
    this.#breaker.onStateChange((state) => {
      const phase = phaseOf(state);
      const log = phase === 'closed' ? options.log.info : options.log.warn;
      log.call(
        options.log,
        { database: this.name, breaker: phase },
        `${this.name} circuit breaker ${phase}`,
      );
      options.onBreaker(this.name, phase);
      options.onChange();
    });
  }

  get breaker(): BreakerPhase {
    return phaseOf(this.#breaker.state);
  }

  /** Whether the last attempt reached the database (unknown before the first). */
  get up(): boolean | undefined {
    return this.#up;
  }

  /**
   * One try of `work` on a validated connection of this database, through its breaker (an open
   * breaker rejects at once with `BrokenCircuitError`). `onStart` runs when the connection is
   * ready, right before `work`. The connection is discarded after any failure: its state
   * (an aborted transaction, a half-read COPY) is unknown.
   */
  attempt<T>(work: (client: pg.PoolClient) => Promise<T>, onStart: () => void): Promise<T> {
    return this.#breaker.execute(async () => {
      let client: pg.PoolClient;
      try {
        client = await this.#connect();
      } catch (error) {
        this.#observe(error);
        throw error;
      }
      let failure: unknown;
      try {
        onStart();
        const result = await withSilenceLimit(
          client,
          this.#options.statementTimeoutMs + SILENCE_GRACE_MS,
          () => work(client),
        );
        this.#observe(undefined);
        this.#options.onAttempt(this.name, 'ok');
        return result;
      } catch (error) {
        failure = error;
        this.#observe(error);
        this.#options.onAttempt(this.name, 'failed');
        throw error;
      } finally {
        release(client, failure !== undefined);
      }
    });
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }

  /** A pooled connection, checked with `SELECT 1` when it sat idle past the validation age. */
  async #connect(): Promise<pg.PoolClient> {
    const { idleValidationMs, connectTimeoutMs, poolSize } = this.#options;
    // Every pooled connection may be stale (a partition killed them all): at most that many
    // are thrown away before one is taken as it comes.
    for (let discarded = 0; ; discarded++) {
      const client = await this.#pool.connect();
      // A connection that drops while checked out emits 'error' on the client, which the pool
      // listens for only while it is idle; unheard, it would crash the process. The failure
      // reaches whoever is using the connection through its query anyway.
      client.on('error', ignore);
      const releasedAt = this.#releasedAt.get(client);
      if (releasedAt === undefined || Date.now() - releasedAt < idleValidationMs) return client;
      if (discarded > poolSize) return client;
      try {
        await withSilenceLimit(client, connectTimeoutMs, () => client.query('SELECT 1'));
        return client;
      } catch (error) {
        release(client, true);
        this.#options.onStaleConnection(this.name);
        this.#options.log.warn(
          { database: this.name, err: error },
          `discarded a stale ${this.name} connection that failed validation`,
        );
      }
    }
  }

  #observe(error: unknown): void {
    const reached = error === undefined || !DB_ERROR_POLICIES[classifyDbError(error)].breaker;
    if (reached === this.#up) return;
    this.#up = reached;
    this.#options.onChange();
  }
}

function ignore(): void {}

/** Back to the pool, or destroyed when it failed (its state is unknown). */
function release(client: pg.PoolClient, failed: boolean): void {
  client.removeListener('error', ignore);
  client.release(failed ? true : undefined);
}

function phaseOf(state: CircuitState): BreakerPhase {
  if (state === CircuitState.Closed) return 'closed';
  if (state === CircuitState.HalfOpen) return 'half_open';
  return 'open';
}

/**
 * Runs `work`, destroying the connection if Postgres sends nothing for `limitMs` meanwhile:
 * a black-holed connection fails in bounded time instead of hanging its request forever.
 */
async function withSilenceLimit<T>(
  client: pg.PoolClient,
  limitMs: number,
  work: () => Promise<T>,
): Promise<T> {
  const socket = (client as unknown as { connection?: { stream?: Socket } }).connection?.stream;
  if (!socket || typeof socket.setTimeout !== 'function') return work();
  let silent = false;
  const onSilence = () => {
    silent = true;
    socket.destroy();
  };
  socket.setTimeout(limitMs, onSilence);
  try {
    return await work();
  } catch (error) {
    throw silent ? new QueryTimeoutError(limitMs, { cause: error }) : error;
  } finally {
    socket.setTimeout(0);
    socket.removeListener('timeout', onSilence);
  }
}
