import { mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomically } from './chunk-file.js';
import type { ChunkCache } from './chunk-cache.js';
import { DiskShapeLog } from './disk-shape-log.js';
import type { DiskShapeLogOptions } from './disk-shape-log.js';
import { ShapeJournal } from './shape-journal.js';
import type { ShapeLog, ShapeStorage, StorageHealth } from './shape-storage.js';

export interface DiskShapeStorageOptions {
  /** SLUICE_STORAGE_DIR: shapes in `shapes/<handle>/`, records as `<name>.json` beside it. */
  storageDir: string;
  chunkBytes: number;
  /** Sealed chunks kept in memory, shared by every shape's log. */
  chunkCache: ChunkCache;
}

const SHAPES_DIR = 'shapes';
const JOURNAL_DIR = 'journal';
/**
 * A journal segment is checkpointed (every log writes and syncs what it journaled, then the
 * segment is deleted) once it holds this much, and this often while it holds records: what a
 * restart after a crash writes back is bounded by it, and each checkpoint costs a sync per log
 * written since.
 */
const JOURNAL_SEGMENT_BYTES = 64 * 1024 * 1024;
const JOURNAL_CHECKPOINT_MS = 30_000;
const METADATA_FILE = 'shape.json';
const HEALTH: StorageHealth = { backend: 'disk', state: 'up', breaker: 'closed' };

/**
 * The default storage: each shape in its own folder of the local disk, its metadata in
 * `shape.json` beside its log's chunk files (the layout of every earlier version, so their
 * stored shapes reopen), and one journal (`journal/`) that makes a flush round of many logs
 * durable with one sync (ShapeJournal). The journal is opened, and what a crash left in it
 * written back, before any shape is listed or opened. A failing disk fails the operation;
 * there is nothing to reconnect to, so the health is constant.
 */
export class DiskShapeStorage implements ShapeStorage {
  readonly backend = 'disk';
  /** A folder of this server's: no other server shares it. */
  readonly channel = undefined;

  /** Nobody else writes this folder: nothing to fence. */
  async claimWriter(): Promise<void> {}
  readonly #options: DiskShapeStorageOptions;
  readonly #shapesDir: string;
  #journal: Promise<ShapeJournal> | undefined;

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
    await this.#openJournal();
    return readdir(this.#shapesDir);
  }

  readMetadata(handle: string): Promise<string | undefined> {
    return readIfPresent(path.join(this.#shapeDir(handle), METADATA_FILE));
  }

  writeMetadata(handle: string, json: string): Promise<void> {
    return writeFileAtomically(path.join(this.#shapeDir(handle), METADATA_FILE), json);
  }

  async createLog(handle: string): Promise<ShapeLog> {
    return DiskShapeLog.create(this.#shapeDir(handle), await this.#logOptions());
  }

  async openLog(handle: string): Promise<ShapeLog> {
    return DiskShapeLog.open(this.#shapeDir(handle), await this.#logOptions());
  }

  /**
   * The journal forgets the shape first: a later shape in its folder never gets its lines. A
   * folder already gone was removed by its log (`destroy`), which had the journal forget it: a
   * second `forget` would cost another journal write and sync for nothing.
   */
  async removeShape(handle: string): Promise<void> {
    const dir = this.#shapeDir(handle);
    if (!(await isPresent(dir))) return;
    await (await this.#openJournal()).forget(handle);
    await rm(dir, { recursive: true, force: true });
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

  /** Logs are closed by their owner first; the journal then has nothing left to keep. */
  async close(): Promise<void> {
    await (await this.#journal)?.close();
  }

  #shapeDir(handle: string): string {
    return path.join(this.#shapesDir, handle);
  }

  #recordFile(name: string): string {
    return path.join(this.#options.storageDir, `${name}.json`);
  }

  async #logOptions(): Promise<DiskShapeLogOptions> {
    const { chunkBytes, chunkCache } = this.#options;
    return { chunkBytes, chunkCache, journal: await this.#openJournal() };
  }

  /** Opened once; a failure is not kept (the next call tries again). */
  #openJournal(): Promise<ShapeJournal> {
    const options = { segmentBytes: JOURNAL_SEGMENT_BYTES, checkpointMs: JOURNAL_CHECKPOINT_MS };
    this.#journal ??= ShapeJournal.open(
      path.join(this.#options.storageDir, JOURNAL_DIR),
      this.#shapesDir,
      options,
    ).catch((error: unknown) => {
      this.#journal = undefined;
      throw error;
    });
    return this.#journal;
  }
}

async function isPresent(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
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
