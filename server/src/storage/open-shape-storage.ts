import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config/config-options.js';
import type { ChunkCache } from './chunk-cache.js';
import { DiskShapeStorage } from './disk-shape-storage.js';
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

/** The storage the configuration asks for: today always the local disk (docs/configuration.md). */
export function openShapeStorage(setup: ShapeStorageSetup): Promise<ShapeStorage> {
  const { storageDir, chunkBytes, chunkCache } = setup;
  return Promise.resolve(new DiskShapeStorage({ storageDir, chunkBytes, chunkCache }));
}
