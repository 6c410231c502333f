import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config/config-options.js';
import type { ChunkCache } from './chunk-cache.js';
import { DiskShapeStorage } from './disk-shape-storage.js';
import { RedisShapeStorage } from './redis-shape-storage.js';
import type { ShapeStorage } from './shape-storage.js';

export interface ShapeStorageSetup {
  config: Config;
  /** SLUICE_STORAGE_DIR, or its default under the data folder. */
  storageDir: string;
  chunkBytes: number;
  /** Sealed chunks kept in memory, shared by every shape's log. */
  chunkCache: ChunkCache;
  log: FastifyBaseLogger;
}

/**
 * The storage the configuration asks for (`SLUICE_STORAGE`, docs/configuration.md). Redis is
 * connected to before the server starts; one that is down then is reconnected to in the
 * background, the server starting in fallback meanwhile.
 */
export function openShapeStorage(setup: ShapeStorageSetup): Promise<ShapeStorage> {
  const { config, storageDir, chunkBytes, chunkCache, log } = setup;
  if (config.storage === 'disk') {
    return Promise.resolve(new DiskShapeStorage({ storageDir, chunkBytes, chunkCache }));
  }
  return RedisShapeStorage.connect({
    // loadConfig refuses SLUICE_STORAGE=redis without SLUICE_REDIS_URL.
    url: config.redisUrl,
    sentinels: config.redisSentinels,
    sentinelName: config.redisSentinelName,
    cluster: config.redisCluster,
    keyPrefix: config.redisKeyPrefix,
    chunkBytes,
    chunkCache,
    healthCheckIntervalMs: config.redisHealthCheckIntervalMs,
    commandTimeoutMs: config.redisCommandTimeoutMs,
    circuitFailureThreshold: config.redisCircuitFailureThreshold,
    circuitResetMs: config.redisCircuitResetMs,
    log,
  });
}
