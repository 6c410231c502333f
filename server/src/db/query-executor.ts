import { BrokenCircuitError, ExponentialBackoff, handleWhen, retry } from 'cockatiel';
import type { FastifyBaseLogger } from 'fastify';
import type pg from 'pg';
import { bigIntToLsn, lsnToBigInt } from '@sluice/protocol';
import { classifyDbError, DB_ERROR_POLICIES } from './classify-db-error.js';
import { CircuitOpenError, ReplicaBehindError } from './database-errors.js';
import type { BreakerPhase } from '@sluice/protocol';
import { DatabaseTarget, type DatabaseName } from './database-target.js';
import { jitteredBackoff } from './jittered-backoff.js';

export interface QueryExecutorOptions {
  primaryUrl: string;
  replicaUrl: string | undefined;
  sessionOptions: string;
  poolSize: number;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  idleValidationMs: number;
  maxRetries: number;
  retryIntervalMs: number;
  maxBackoffMs: number;
  replicaAttempts: number;
  circuitFailureThreshold: number;
  circuitResetMs: number;
  /** A failed attempt that will be tried again, and why. */
  onRetry?(database: DatabaseName, errorClass: string): void;
  onStaleConnection?(database: DatabaseName): void;
  onAttempt?(database: DatabaseName, outcome: 'ok' | 'failed'): void;
  onBreaker?(database: DatabaseName, phase: BreakerPhase): void;
  /** A breaker moved, or a database started or stopped answering. */
  onChange?(): void;
  log: FastifyBaseLogger;
}

export interface RunOptions {
  /**
   * False when `work` has effects outside the database that a second run would repeat (rows
   * already appended to a shape log, bytes already sent): then only failures before `work`
   * started (connecting, validation) are retried, and later ones fail the request cleanly.
   */
  rerunnable?: boolean;
  /** Read-only work that must see everything up to this WAL position (replica reads only). */
  minLsn?: bigint;
}

export interface DatabaseStates {
  primary: { up: boolean | undefined; breaker: BreakerPhase };
  replica: { up: boolean | undefined; breaker: BreakerPhase } | undefined;
}

/**
 * Every query Sluice runs outside the replication stream goes through here (docs/architecture.md: query
 * executor). Transient failures are retried whole on a fresh connection with exponential backoff
 * and jitter; each database has a circuit breaker, so a dead one costs requests nothing but a
 * fast 503; reads can go to a replica first and fall back to the primary.
 */
export class QueryExecutor {
  readonly #options: QueryExecutorOptions;
  readonly #primary: DatabaseTarget;
  readonly #replica: DatabaseTarget | undefined;

  constructor(options: QueryExecutorOptions) {
    this.#options = options;
    const target = (name: DatabaseName, connectionString: string) =>
      new DatabaseTarget({
        name,
        connectionString,
        sessionOptions: options.sessionOptions,
        poolSize: options.poolSize,
        connectTimeoutMs: options.connectTimeoutMs,
        statementTimeoutMs: options.statementTimeoutMs,
        idleValidationMs: options.idleValidationMs,
        failureThreshold: options.circuitFailureThreshold,
        resetMs: options.circuitResetMs,
        onStaleConnection: (database) => options.onStaleConnection?.(database),
        onAttempt: (database, outcome) => options.onAttempt?.(database, outcome),
        onBreaker: (database, phase) => options.onBreaker?.(database, phase),
        onChange: () => options.onChange?.(),
        log: options.log,
      });
    this.#primary = target('primary', options.primaryUrl);
    this.#replica = options.replicaUrl ? target('replica', options.replicaUrl) : undefined;
  }

  /** Runs `work` on the primary (writes, and reads that must see the very latest). */
  primary<T>(work: (client: pg.PoolClient) => Promise<T>, options: RunOptions = {}): Promise<T> {
    return this.#run(this.#primary, work, this.#options.maxRetries + 1, options);
  }

  /**
   * Runs read-only `work` on the replica when there is one: `SLUICE_DB_REPLICA_ATTEMPTS` tries
   * there, then one on the primary, whatever the replica's error (it may only be behind: a table
   * it has not replayed yet "does not exist"). A replica whose breaker is open, or which has not
   * replayed `minLsn` yet, is skipped and the primary gets its usual retries. Without a replica, this is
   * `primary(work)`.
   */
  async read<T>(work: (client: pg.PoolClient) => Promise<T>, options: RunOptions = {}): Promise<T> {
    const replica = this.#replica;
    if (!replica) return this.primary(work, options);
    const { minLsn } = options;
    const onReplica =
      minLsn === undefined
        ? work
        : async (client: pg.PoolClient) => {
            await requireReplayed(client, minLsn);
            return work(client);
          };
    let started = false;
    try {
      return await this.#run(replica, onReplica, this.#options.replicaAttempts, {
        ...options,
        onStart: () => (started = true),
      });
    } catch (error) {
      const skipped = error instanceof ReplicaBehindError || error instanceof CircuitOpenError;
      // A permanent error is not final on a replica: it may only be behind (a table or column
      // the primary already has). The primary's answer is the one that counts.
      if (started && options.rerunnable === false && !(error instanceof ReplicaBehindError))
        throw error;
      this.#options.log.debug({ err: error }, 'replica could not answer; asking the primary');
      return this.#run(this.#primary, work, skipped ? this.#options.maxRetries + 1 : 1, options);
    }
  }

  states(): DatabaseStates {
    const describe = (target: DatabaseTarget) => ({ up: target.up, breaker: target.breaker });
    return {
      primary: describe(this.#primary),
      replica: this.#replica ? describe(this.#replica) : undefined,
    };
  }

  async close(): Promise<void> {
    await Promise.all([this.#primary.close(), this.#replica?.close()]);
  }

  async #run<T>(
    target: DatabaseTarget,
    work: (client: pg.PoolClient) => Promise<T>,
    attempts: number,
    options: RunOptions & { onStart?: () => void },
  ): Promise<T> {
    const { retryIntervalMs, maxBackoffMs } = this.#options;
    let started = false;
    const policy = retry(
      handleWhen((error) => {
        if (error instanceof BrokenCircuitError || error instanceof ReplicaBehindError)
          return false;
        if (started && options.rerunnable === false) return false;
        return DB_ERROR_POLICIES[classifyDbError(error)].retry;
      }),
      {
        maxAttempts: attempts - 1,
        backoff: new ExponentialBackoff({
          initialDelay: retryIntervalMs,
          maxDelay: maxBackoffMs,
          generator: jitteredBackoff,
        }),
      },
    );
    policy.onRetry((event) => {
      const errorClass = 'error' in event ? classifyDbError(event.error) : 'unknown';
      this.#options.onRetry?.(target.name, errorClass);
    });
    try {
      return await policy.execute(() =>
        target.attempt(work, () => {
          started = true;
          options.onStart?.();
        }),
      );
    } catch (error) {
      if (error instanceof BrokenCircuitError) {
        throw new CircuitOpenError(
          target.name,
          Math.max(1, Math.ceil(this.#options.circuitResetMs / 1000)),
          { cause: error },
        );
      }
      throw error;
    }
  }
}

/** Fails with `ReplicaBehindError` unless this (standby) connection has replayed `minLsn`. */
async function requireReplayed(client: pg.PoolClient, minLsn: bigint): Promise<void> {
  const { rows } = await client.query<{ replayed: string | null }>(
    'SELECT pg_last_wal_replay_lsn()::text AS replayed',
  );
  // Null: not a standby (promoted, or pointed at a primary), which sees everything it has.
  const replayed = rows[0]?.replayed ?? null;
  if (replayed !== null && lsnToBigInt(replayed) < minLsn) {
    throw new ReplicaBehindError(replayed, bigIntToLsn(minLsn));
  }
}
