import {
  BrokenCircuitError,
  circuitBreaker,
  CircuitState,
  ConsecutiveBreaker,
  handleWhen,
  type CircuitBreakerPolicy,
} from 'cockatiel';
import type { FastifyBaseLogger } from 'fastify';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { reconnectDelay } from '../async/reconnect-delay.js';
import type { StorageHealth } from './shape-storage.js';

/** What both a standalone/Sentinel connection and a Cluster client offer. */
export type RedisClient = Redis | Cluster;

export interface RedisConnectionOptions {
  /**
   * `redis://` or `rediss://` (TLS). With `sentinels`, only its scheme, user, password and db
   * count; with `cluster`, it is the seed node.
   */
  url: string;
  /** Sentinels to ask for the master of `sentinelName` (docs/operations.md, "Redis storage"). */
  sentinels?: { host: string; port: number }[];
  /** The Sentinels' master group name (default `mymaster`). */
  sentinelName?: string;
  /** `url` is one node of a Redis Cluster. */
  cluster?: boolean;
  /** The connection is sent a PING this often; one unanswered marks Redis down. */
  healthCheckIntervalMs: number;
  /** A command unanswered for this long fails, and its connection is replaced. */
  commandTimeoutMs: number;
  /** Consecutive failed commands that open the breaker. */
  circuitFailureThreshold: number;
  /** How long an open breaker waits before letting one command through (half-open). */
  circuitResetMs: number;
  log: FastifyBaseLogger;
}

/** Reconnect backoff: exponential from the floor to the cap, ±25 % jitter, forever. */
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 2_000;

/** The wait before reconnect attempt `attempt` (1-based, as ioredis counts): replication's schedule. */
export function redisReconnectDelay(attempt: number, random: () => number = Math.random): number {
  return reconnectDelay(attempt - 1, RECONNECT_MIN_MS, RECONNECT_MAX_MS, random);
}

/** Redis could not be reached, or its breaker is open: the operation did not happen (or may have). */
export class RedisUnavailableError extends Error {
  override readonly name = 'RedisUnavailableError';
  readonly code = 'SLUICE_STORAGE_UNAVAILABLE';
}

/**
 * The one Redis connection of a storage, with the resilience Redis needs (docs/operations.md):
 * - ioredis reconnects on `redisReconnectDelay`, never giving up;
 * - commands fail at once while disconnected (no offline queue) and after `commandTimeoutMs`
 *   unanswered, and the connection they waited on is then destroyed and replaced, so a
 *   black-holed Redis never holds a caller;
 * - a PING every `healthCheckIntervalMs`, so a dead connection is noticed within that plus the
 *   command timeout even when nothing else is sent (TCP alone can take minutes);
 * - a cockatiel circuit breaker in front of every command: after repeated failures they fail at
 *   once, and the health PING is its trial command, so it closes by itself once Redis answers.
 */
export class RedisConnection {
  readonly redis: RedisClient;
  readonly #breaker: CircuitBreakerPolicy;
  readonly #log: FastifyBaseLogger;
  readonly #timer: NodeJS.Timeout;
  /** Unknown until the first connection attempt ends. */
  #state: 'up' | 'down' | undefined;
  readonly #listeners: (() => void)[] = [];
  #closed = false;

  constructor(options: RedisConnectionOptions) {
    this.#log = options.log;
    this.redis = createClient(options);
    // Every failure also rejects its command; the event is only logged.
    this.redis.on('error', (error: Error) => this.#down(error));
    this.redis.on('close', () => this.#down(undefined));
    this.redis.on('ready', () => this.#reached());
    this.#breaker = circuitBreaker(
      // Redis refusing one of Sluice's own scripts says nothing about Redis' health.
      handleWhen((error) => !isScriptRefusal(error)),
      {
        halfOpenAfter: options.circuitResetMs,
        breaker: new ConsecutiveBreaker(options.circuitFailureThreshold),
      },
    );
    this.#breaker.onStateChange((state) => {
      const phase = phaseOf(state);
      (phase === 'closed' ? this.#log.info : this.#log.warn).call(
        this.#log,
        { breaker: phase },
        `redis circuit breaker ${phase}`,
      );
      this.#changed();
    });
    // Every interval, busy or not: a reply that arrived just before the connection died must
    // not delay the check, so a dead connection is noticed within interval + command timeout.
    this.#timer = setInterval(() => {
      this.run((redis) => redis.ping()).catch(() => undefined);
    }, options.healthCheckIntervalMs);
    this.#timer.unref();
  }

  /**
   * Starts connecting; resolves once connected, or once the first attempt failed (ioredis then
   * keeps trying in the background: a Redis down at startup is not a reason to give up).
   */
  async open(): Promise<void> {
    await this.redis.connect().catch((error: unknown) => this.#down(error));
  }

  health(): Omit<StorageHealth, 'backend'> {
    const breaker = phaseOf(this.#breaker.state);
    return { state: this.#state === 'up' && breaker !== 'open' ? 'up' : 'down', breaker };
  }

  /** Runs one Redis operation through the breaker; its failures count, and set the state. */
  async run<T>(operation: (redis: RedisClient) => Promise<T>): Promise<T> {
    try {
      const result = await this.#breaker.execute(() => operation(this.redis));
      this.#reached();
      return result;
    } catch (error) {
      if (isScriptRefusal(error)) {
        this.#reached();
        throw error;
      }
      this.#down(error);
      if (error instanceof BrokenCircuitError) {
        throw new RedisUnavailableError('Redis failed repeatedly; its circuit breaker is open', {
          cause: error,
        });
      }
      throw new RedisUnavailableError(`Redis failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  /** Calls `listener` whenever what `health()` says may have changed. */
  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  #reached(): void {
    if (this.#state === 'up') return;
    this.#state = 'up';
    this.#log.info('redis reachable');
    this.#changed();
  }

  #down(error: unknown): void {
    // Closing ends the connection: not an outage to report.
    if (this.#state === 'down' || this.#closed) return;
    this.#state = 'down';
    this.#log.warn({ err: error }, 'redis unreachable');
    this.#changed();
  }

  #changed(): void {
    for (const listener of this.#listeners) listener();
  }
}

/**
 * The ioredis client for the topology asked for, each with the same resilience settings: a
 * standalone Redis, a master found through Sentinels (followed across failovers), or a Cluster.
 */
function createClient(options: RedisConnectionOptions): RedisClient {
  const url = new URL(options.url);
  const tls = url.protocol === 'rediss:' ? {} : undefined;
  const resilience: RedisOptions = {
    lazyConnect: true,
    retryStrategy: (attempt) => redisReconnectDelay(attempt),
    commandTimeout: options.commandTimeoutMs,
    // Destroys a socket that is sent a command and then stays silent; ioredis reconnects.
    socketTimeout: options.commandTimeoutMs,
    connectTimeout: options.commandTimeoutMs,
    enableOfflineQueue: false,
    // A command whose connection broke fails: the caller decides (flushes retry idempotently).
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // Flushes of many shape logs issued together go out in one write.
    enableAutoPipelining: true,
  };
  if (options.cluster) {
    const { lazyConnect, enableOfflineQueue, enableAutoPipelining, ...nodeOptions } = resilience;
    return new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], {
      lazyConnect,
      enableOfflineQueue,
      enableAutoPipelining,
      // The Cluster client itself retries its whole startup on the same backoff, forever.
      clusterRetryStrategy: (attempt) => redisReconnectDelay(attempt),
      redisOptions: {
        ...nodeOptions,
        username: decodeURIComponent(url.username) || undefined,
        password: decodeURIComponent(url.password) || undefined,
        tls,
      },
    });
  }
  if (options.sentinels) {
    return new Redis({
      ...resilience,
      sentinels: options.sentinels,
      name: options.sentinelName ?? 'mymaster',
      // The Sentinels are asked again on the same backoff, forever.
      sentinelRetryStrategy: (attempt) => redisReconnectDelay(attempt),
      // After a failover: the Sentinels' +switch-master closes the connection at once, and a
      // demoted master's READONLY replies make it reconnect, so the Sentinels are asked again.
      failoverDetector: true,
      reconnectOnError: (error) => error.message.startsWith('READONLY'),
      username: decodeURIComponent(url.username) || undefined,
      password: decodeURIComponent(url.password) || undefined,
      db: Number(url.pathname.slice(1) || 0),
      // `rediss://` is for the master; ioredis applies `tls` in Sentinel mode only with this.
      tls,
      enableTLSForSentinelMode: tls !== undefined,
    });
  }
  return new Redis(options.url, resilience);
}

/** Redis refused one of Sluice's scripts (`SLUICE_…` errors): Redis itself is fine. */
function isScriptRefusal(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('SLUICE');
}

function phaseOf(state: CircuitState): StorageHealth['breaker'] {
  if (state === CircuitState.Closed) return 'closed';
  if (state === CircuitState.HalfOpen) return 'half-open';
  return 'open';
}
