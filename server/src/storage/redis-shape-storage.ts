import type { FastifyBaseLogger } from 'fastify';
import type { ChunkCache } from './chunk-cache.js';
import { RedisChannel } from './redis-channel.js';
import { RedisConnection, type RedisConnectionOptions } from './redis-connection.js';
import { FLUSH_SCRIPT } from './redis-flush-script.js';
import { RedisKeys } from './redis-keys.js';
import { RedisShapeLog, ShapeLogMissingError } from './redis-shape-log.js';
import type { RedisShapeLogOptions } from './redis-shape-log.js';
import type { ShapeLog, ShapeStorage, StorageHealth } from './shape-storage.js';

export interface RedisShapeStorageOptions {
  /** `redis://` or `rediss://` (TLS); see `RedisConnectionOptions` with Sentinel or Cluster. */
  url: string;
  sentinels?: RedisConnectionOptions['sentinels'];
  sentinelName?: string;
  cluster?: boolean;
  /** Start of every key (`SLUICE_REDIS_KEY_PREFIX`): several deployments can share a Redis. */
  keyPrefix: string;
  chunkBytes: number;
  chunkCache: ChunkCache;
  healthCheckIntervalMs: number;
  commandTimeoutMs: number;
  /** Consecutive failed commands that open the breaker (default 5). */
  circuitFailureThreshold?: number;
  /** How long an open breaker waits before one trial command (default 5 s). */
  circuitResetMs?: number;
  log: FastifyBaseLogger;
}

/**
 * Shapes kept in Redis (`SLUICE_STORAGE=redis`): the keys are described in `RedisKeys`, the logs
 * are `RedisShapeLog`s, and every command goes through one `RedisConnection` (reconnects,
 * health pings, timeouts, circuit breaker).
 */
export class RedisShapeStorage implements ShapeStorage {
  readonly backend = 'redis';
  readonly #connection: RedisConnection;
  readonly #keys: RedisKeys;
  readonly #chunkBytes: number;
  readonly #chunkCache: ChunkCache;
  readonly channel: RedisChannel;
  /** The writer epoch this server flushes with: 0 until it claims the storage. */
  #epoch = 0;

  private constructor(connection: RedisConnection, options: RedisShapeStorageOptions) {
    this.#connection = connection;
    this.#keys = new RedisKeys(options.keyPrefix);
    const { healthCheckIntervalMs, log } = options;
    this.channel = new RedisChannel(connection, this.#keys.channel, healthCheckIntervalMs, log);
    this.channel.open();
    this.#chunkBytes = options.chunkBytes;
    this.#chunkCache = options.chunkCache;
  }

  /**
   * Connects to Redis. Resolves once connected, or once the first attempt failed: a Redis that
   * is down at startup is reported by `health()` and reconnected to in the background.
   */
  static async connect(options: RedisShapeStorageOptions): Promise<RedisShapeStorage> {
    if (!(options.chunkBytes > 0)) throw new RangeError('chunkBytes must be positive');
    const connection = new RedisConnection({
      url: options.url,
      sentinels: options.sentinels,
      sentinelName: options.sentinelName,
      cluster: options.cluster,
      healthCheckIntervalMs: options.healthCheckIntervalMs,
      commandTimeoutMs: options.commandTimeoutMs,
      circuitFailureThreshold: options.circuitFailureThreshold ?? 5,
      circuitResetMs: options.circuitResetMs ?? 5_000,
      log: options.log,
    });
    // EVALSHA, falling back to EVAL when Redis does not have the script (after a restart).
    connection.redis.defineCommand('sluiceFlush', { lua: FLUSH_SCRIPT });
    await connection.open();
    return new RedisShapeStorage(connection, options);
  }

  async listShapes(): Promise<string[]> {
    return this.#connection.run((redis) => redis.smembers(this.#keys.shapes));
  }

  async readMetadata(handle: string): Promise<string | undefined> {
    const key = this.#keys.shape(handle).metadata;
    return (await this.#connection.run((redis) => redis.get(key))) ?? undefined;
  }

  async writeMetadata(handle: string, json: string): Promise<void> {
    const key = this.#keys.shape(handle).metadata;
    // Listed first: a crash in between leaves a listed shape without metadata, which loading
    // removes, never metadata that no listing finds.
    await this.#connection.run(async (redis) => {
      await redis.sadd(this.#keys.shapes, handle);
      await redis.set(key, json);
    });
  }

  async createLog(handle: string): Promise<ShapeLog> {
    const keys = this.#keys.shape(handle);
    const created = await this.#connection.run(async (redis) => {
      await redis.sadd(this.#keys.shapes, handle);
      return redis.hsetnx(keys.log, 'open', 1);
    });
    if (created === 0) throw new Error(`shape log ${keys.tag} already exists`);
    return RedisShapeLog.created(this.#logOptions(handle));
  }

  async openLog(handle: string): Promise<ShapeLog> {
    const keys = this.#keys.shape(handle);
    const [open, sealed] = await this.#connection.run(async (redis) => {
      const results = await redis.multi().hget(keys.log, 'open').lrange(keys.sealed, 0, -1).exec();
      return results!.map(([error, value]) => {
        if (error) throw error;
        return value;
      }) as [string | null, string[]];
    });
    if (open === null) throw new ShapeLogMissingError(`no shape log ${keys.tag}`);
    // The open chunk is read after the index: only the one writer changes either.
    const openEntries = await this.#connection.run((redis) =>
      redis.lrange(keys.chunk(Number(open)), 0, -1),
    );
    return RedisShapeLog.opened(this.#logOptions(handle), {
      open: Number(open),
      sealed,
      openEntries,
    });
  }

  async removeShape(handle: string): Promise<void> {
    const keys = this.#keys.shape(handle);
    await this.#connection.run(async (redis) => {
      const [open, sealed] = await Promise.all([
        redis.hget(keys.log, 'open'),
        redis.lrange(keys.sealed, 0, -1),
      ]);
      const chunks = sealed.map((text) =>
        keys.chunk((JSON.parse(text) as { number: number }).number),
      );
      if (open !== null) chunks.push(keys.chunk(Number(open)));
      await redis.del(keys.log, keys.sealed, keys.metadata, ...chunks);
      await redis.srem(this.#keys.shapes, handle);
    });
  }

  async readRecord(name: string): Promise<string | undefined> {
    const key = this.#keys.record(name);
    return (await this.#connection.run((redis) => redis.get(key))) ?? undefined;
  }

  async writeRecord(name: string, json: string): Promise<void> {
    const key = this.#keys.record(name);
    await this.#connection.run((redis) => redis.set(key, json));
  }

  health(): StorageHealth {
    return { backend: 'redis', ...this.#connection.health() };
  }

  onHealthChange(listener: (health: StorageHealth) => void): void {
    this.#connection.onChange(() => listener(this.health()));
  }

  close(): Promise<void> {
    this.channel.close();
    return this.#connection.close();
  }

  /**
   * Takes the next writer epoch and stamps it on every stored log (pipelined), so that from now on
   * only this server's flushes are accepted: a server that wrote before and has not noticed it
   * lost the replication lock is refused (`SLUICE_FENCED`). A flush of its that Redis ran before
   * the stamp is in the log, where this server reads it afterwards.
   */
  async claimWriter(): Promise<void> {
    const epoch = await this.#connection.run((redis) => redis.incr(this.#keys.writerEpoch));
    const handles = await this.listShapes();
    await this.#connection.run((redis) =>
      Promise.all(
        handles.map((handle) => redis.hset(this.#keys.shape(handle).log, 'epoch', epoch)),
      ),
    );
    this.#epoch = epoch;
  }

  #logOptions(handle: string): RedisShapeLogOptions {
    return {
      epoch: () => this.#epoch,
      connection: this.#connection,
      keys: this.#keys.shape(handle),
      chunkBytes: this.#chunkBytes,
      chunkCache: this.#chunkCache,
    };
  }
}
