import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomically } from './chunk-file.js';
import type { ChunkCache } from './chunk-cache.js';
import { DiskShapeLog } from './disk-shape-log.js';
import type { ShapeLog, ShapeStorage, StorageHealth } from './shape-storage.js';

export interface DiskShapeStorageOptions {
  /** SLUICE_STORAGE_DIR: shapes in `shapes/<handle>/`, records as `<name>.json` beside it. */
  storageDir: string;
  chunkBytes: number;
  /** Sealed chunks kept in memory, shared by every shape's log. */
  chunkCache: ChunkCache;
}

const SHAPES_DIR = 'shapes';
const METADATA_FILE = 'shape.json';
const HEALTH: StorageHealth = { backend: 'disk', state: 'up', breaker: 'closed' };

/**
 * The default storage: each shape in its own folder of the local disk, its metadata in
 * `shape.json` beside its log's chunk files (the layout of every earlier version, so their
 * stored shapes reopen). A failing disk fails the operation; there is nothing to reconnect to,
 * so the health is constant.
 */
export class DiskShapeStorage implements ShapeStorage {
  readonly backend = 'disk';
  /** A folder of this server's: no other server shares it. */
  readonly channel = undefined;

  /** Nobody else writes this folder: nothing to fence. */
  async claimWriter(): Promise<void> {}
  readonly #options: DiskShapeStorageOptions;
  readonly #shapesDir: string;

  constructor(options: DiskShapeStorageOptions) {
    this.#options = options;
    this.#shapesDir = path.join(options.storageDir, SHAPES_DIR);
  }

  /**
   * Every shape folder, also one whose metadata was never written (a creation cut short): its
   * owner finds no metadata and removes it.
   */
  async listShapes(): Promise<string[]> {
    await mkdir(this.#shapesDir, { recursive: true });
    return readdir(this.#shapesDir);
  }

  readMetadata(handle: string): Promise<string | undefined> {
    return readIfPresent(path.join(this.#shapeDir(handle), METADATA_FILE));
  }

  writeMetadata(handle: string, json: string): Promise<void> {
    return writeFileAtomically(path.join(this.#shapeDir(handle), METADATA_FILE), json);
  }

  createLog(handle: string): Promise<ShapeLog> {
    return DiskShapeLog.create(this.#shapeDir(handle), this.#logOptions());
  }

  openLog(handle: string): Promise<ShapeLog> {
    return DiskShapeLog.open(this.#shapeDir(handle), this.#logOptions());
  }

  removeShape(handle: string): Promise<void> {
    return rm(this.#shapeDir(handle), { recursive: true, force: true });
  }

  readRecord(name: string): Promise<string | undefined> {
    return readIfPresent(this.#recordFile(name));
  }

  async writeRecord(name: string, json: string): Promise<void> {
    const file = this.#recordFile(name);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomically(file, json);
  }

  health(): StorageHealth {
    return HEALTH;
  }

  /** The disk's health never changes: a failing disk fails each operation instead. */
  onHealthChange(): void {}

  /** Logs are closed by their owner; the disk holds nothing open otherwise. */
  async close(): Promise<void> {}

  #shapeDir(handle: string): string {
    return path.join(this.#shapesDir, handle);
  }

  #recordFile(name: string): string {
    return path.join(this.#options.storageDir, `${name}.json`);
  }

  #logOptions(): { chunkBytes: number; chunkCache: ChunkCache } {
    const { chunkBytes, chunkCache } = this.#options;
    return { chunkBytes, chunkCache };
  }
}

async function readIfPresent(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
