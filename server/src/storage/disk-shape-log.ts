import { mkdir, open, readFile, readdir, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { SEAL_LINE, chunkFileName, scanChunk, syncDirectory, writeAllOf } from './chunk-file.js';
import type { ParsedChunk } from './chunk-file.js';
import { ChunkCache } from './chunk-cache.js';
import { ShapeLogCorruptError, writeIndex } from './chunk-index.js';
import type { ChunkDescriptor } from './chunk-index.js';
import { ChunkedShapeLog } from './chunked-shape-log.js';
import type { PendingChunk } from './chunked-shape-log.js';
import { recoverLog } from './recover-log.js';
import type { RecoveredLog } from './recover-log.js';
import type { JournalClient, ShapeJournal } from './shape-journal.js';
import { newTailChunk } from './tail-chunk.js';
import type { TailChunk } from './tail-chunk.js';
import { cutSealedChunks } from './truncate-log.js';

export { ShapeLogCorruptError } from './chunk-index.js';

const SEAL_BUFFER = Buffer.from(SEAL_LINE);
/**
 * A flush adding more than this to a log writes its chunk files itself: through the journal
 * those bytes would be written twice, which costs more than the sync it saves (a large
 * snapshot's chunks). Below it, many logs flushed at once share the journal's one sync.
 */
const JOURNALED_FLUSH_BYTES = 1024 * 1024;

export interface DiskShapeLogOptions {
  /** A chunk is sealed at the end of the append() that makes it reach this many bytes. */
  chunkBytes: number;
  /**
   * Where sealed chunks are kept parsed for catch-up readers: one cache shared by every log
   * (bounded in bytes across all shapes). Default: a cache of the log's own, of two chunks.
   */
  chunkCache?: ChunkCache;
  /**
   * The storage's journal, shared by its logs: a flush of up to `JOURNALED_FLUSH_BYTES` records
   * its new lines and seals there (one sync for every log flushed at once), and the chunk files
   * (and the index) get them at a checkpoint. Without one, each flush writes and syncs the
   * chunk files itself.
   */
  journal?: ShapeJournal;
}

export interface DiskTailChunk extends TailChunk {
  /** Bytes of its lines in the file: those after them are appended but not yet written. */
  writtenBytes: number;
  /** Bytes of its lines the journal made durable: the file may hold fewer until a checkpoint. */
  journaledBytes: number;
  /** The file exists and its directory entry was synced. */
  onDisk: boolean;
  handle: FileHandle | undefined;
}

function newDiskChunk(number: number): DiskTailChunk {
  return {
    ...newTailChunk(number),
    writtenBytes: 0,
    journaledBytes: 0,
    onDisk: false,
    handle: undefined,
  };
}

/** Checked before anything touches the disk (the base class checks again, too late for that). */
function checkOptions(options: DiskShapeLogOptions): void {
  if (!(options.chunkBytes > 0)) throw new RangeError('chunkBytes must be positive');
}

/**
 * The disk backend's `ShapeLog`: one shape's chunked log in its own directory, one file per
 * chunk plus the index of sealed chunks (docs/protocol.md §3). Sealed chunks are read from disk
 * through a cache (shared by all logs); the open chunk is kept in memory for long-pollers at the
 * tail, and so is a chunk sealed through the journal until a checkpoint completes its file. The
 * in-memory log is `ChunkedShapeLog`'s; this class writes and cuts the files.
 */
export class DiskShapeLog extends ChunkedShapeLog<DiskTailChunk> implements JournalClient {
  readonly #journal: ShapeJournal | undefined;
  /** The folder's name, which is how the journal names the log (the shape's handle). */
  readonly #name: string;
  /** Being deleted (`destroy`): it owes its files and the journal's checkpoints nothing. */
  #erased = false;
  /**
   * Chunks sealed through the journal, in order, whose files the next checkpoint completes (and
   * then indexes). Until then reads of them are served from here, not from their files.
   */
  #unwritten: DiskTailChunk[] = [];

  private constructor(dir: string, options: DiskShapeLogOptions, recovered: RecoveredLog) {
    const { active } = recovered;
    let nextNumber = recovered.nextNumber;
    const openChunk = active
      ? {
          ...newDiskChunk(active.number),
          ...active,
          durableCount: active.offsets.length,
          writtenBytes: active.lines.bytesOf(),
          journaledBytes: active.lines.bytesOf(),
        }
      : newDiskChunk(nextNumber++);
    openChunk.onDisk = active !== undefined;
    // A sealed chunk ends at most one entry past chunkBytes; 3 leaves room for large entries.
    const chunkCache = options.chunkCache ?? new ChunkCache(3 * options.chunkBytes);
    const { chunkBytes } = options;
    super(dir, { chunkBytes, chunkCache }, recovered.sealed, openChunk, nextNumber);
    this.#journal = options.journal;
    this.#name = path.basename(dir);
  }

  /** Starts an empty log; `dir` must not exist or be empty. */
  static async create(dir: string, options: DiskShapeLogOptions): Promise<DiskShapeLog> {
    checkOptions(options);
    await mkdir(dir, { recursive: true });
    if ((await readdir(dir)).length > 0) throw new Error(`${dir} is not empty`);
    await writeIndex(dir, []); // marks the directory as a shape log
    await syncDirectory(path.dirname(dir));
    return new DiskShapeLog(dir, options, { sealed: [], active: undefined, nextNumber: 1 });
  }

  /** Reopens a log after a restart or crash, repairing torn writes (see recoverLog). */
  static async open(dir: string, options: DiskShapeLogOptions): Promise<DiskShapeLog> {
    checkOptions(options);
    return new DiskShapeLog(dir, options, await recoverLog(dir));
  }

  protected newChunk(number: number): DiskTailChunk {
    return newDiskChunk(number);
  }

  /**
   * With a journal, when the flush is small: one journal record per dirty chunk, seals included.
   * Otherwise what the journal holds goes to the files first, then one write plus fdatasync per
   * dirty chunk file, in chunk order (so a later chunk never has bytes on disk before an earlier
   * one is complete; a seal takes every line the journal held too), then the index if chunks
   * were sealed.
   */
  protected async persist(
    pending: readonly PendingChunk<DiskTailChunk>[],
    newlySealed: readonly ChunkDescriptor[],
  ): Promise<void> {
    const journal = this.#journal;
    if (journal && flushBytes(pending) <= JOURNALED_FLUSH_BYTES) {
      await Promise.all(pending.map((item) => this.#journalLines(journal, item)));
      const sealed = pending.filter((item) => item.sealed).map((item) => item.chunk);
      // A new array, not a push: one grown keeps room for more (ChunkLines.compact).
      if (sealed.length > 0) this.#unwritten = [...this.#unwritten, ...sealed];
      return;
    }
    // Chunks sealed through the journal are completed first; the open chunks' journaled lines
    // go in this flush's own writes, which start where each file ends.
    await this.#writeJournaled(false);
    // The lines to write are taken now, before anything is awaited: appends meanwhile come after.
    const work = pending.map(({ chunk, count, sealed }) => {
      const end = chunk.lines.bytesOf(count);
      const lines = chunk.lines.slice(chunk.writtenBytes, end);
      chunk.writtenBytes = end;
      // The seal line goes in the same write as the chunk's last lines.
      return { chunk, buffers: sealed ? [...lines, SEAL_BUFFER] : lines, sealed };
    });
    for (const { chunk, buffers, sealed } of work) {
      chunk.handle ??= await this.#openChunkFile(chunk.number);
      const handle = chunk.handle;
      await writeAllOf(handle, buffers);
      await handle.datasync();
      // The chunk that follows a sealed one is created now, empty, so the directory sync
      // this flush does anyway covers it: otherwise the first change after a snapshot costs
      // every shape a directory sync of its own. Created only after the sealed chunk's
      // datasync, so recovery never finds a later file beside an incomplete earlier one.
      const next = sealed ? this.#emptyOpenChunkAfter(chunk) : undefined;
      if (next) await (await this.#openChunkFile(next.number)).close();
      if (!chunk.onDisk || next) {
        await syncDirectory(this.location);
        chunk.onDisk = true;
        if (next) next.onDisk = true;
      }
      if (sealed) {
        chunk.handle = undefined;
        await handle.close();
      }
    }
    if (newlySealed.length > 0)
      await writeIndex(this.location, [...this.sealedChunks, ...newlySealed]);
  }

  /**
   * Records a chunk's new lines, and its seal, in the journal; its file gets them at the next
   * checkpoint.
   */
  #journalLines(
    journal: ShapeJournal,
    { chunk, count, sealed }: PendingChunk<DiskTailChunk>,
  ): Promise<void> {
    const end = chunk.lines.bytesOf(count);
    const from = Math.max(chunk.writtenBytes, chunk.journaledBytes);
    if (end <= from && !sealed) return Promise.resolve();
    chunk.journaledBytes = end;
    const lines = chunk.lines.slice(from, end);
    const bytes = sealed ? [...lines, SEAL_BUFFER] : lines;
    return journal.record(this, this.#name, chunk.number, from, bytes);
  }

  /**
   * Writes the lines the journal holds of this log into its chunk files, and syncs them. A
   * failure fails the log, and the journal keeps the lines for the next start to write back.
   */
  checkpoint(): Promise<void> {
    if (this.#erased) return Promise.resolve();
    return this.exclusive(() => this.#writeJournaled());
  }

  /**
   * Completes the chunks sealed through the journal, in order, then (with `openChunks`) writes
   * the open chunks' journaled lines: each file synced before the next gets anything, the files
   * made here synced into the folder, then the index names the completed chunks (as a flush
   * that seals orders it; recoverLog relies on that order).
   */
  async #writeJournaled(openChunks = true): Promise<void> {
    const completed = this.#unwritten;
    const written: DiskTailChunk[] = [];
    for (const chunk of completed) {
      await this.#writeFromJournal(chunk, chunk.lines.bytesOf(), true);
      written.push(chunk);
    }
    for (const chunk of openChunks ? this.tailChunks : []) {
      if (chunk.journaledBytes <= chunk.writtenBytes) continue;
      await this.#writeFromJournal(chunk, chunk.journaledBytes, false);
      written.push(chunk);
    }
    const made = written.filter((chunk) => !chunk.onDisk);
    if (made.length > 0) await syncDirectory(this.location);
    for (const chunk of made) chunk.onDisk = true;
    if (completed.length === 0) return;
    await writeIndex(this.location, this.sealedChunks);
    this.#unwritten = [];
  }

  /**
   * Writes a chunk's lines from what its file holds up to `end` (and its seal), syncs and, when
   * sealed, closes it; the file is made if need be (its folder then needs a sync).
   */
  async #writeFromJournal(chunk: DiskTailChunk, end: number, seal: boolean): Promise<void> {
    chunk.handle ??= await this.#openChunkFile(chunk.number);
    const lines = chunk.lines.slice(chunk.writtenBytes, end);
    await writeAllOf(chunk.handle, seal ? [...lines, SEAL_BUFFER] : lines);
    await chunk.handle.datasync();
    chunk.writtenBytes = end;
    if (seal) {
      const { handle } = chunk;
      chunk.handle = undefined;
      await handle.close();
    }
  }

  /** Every line the journal holds of this log goes to its files first: none can come back. */
  protected override async prepareCut(): Promise<void> {
    await this.#journal?.checkpoint();
  }

  /** The open chunk right after `chunk` when it holds nothing and has no file yet. */
  #emptyOpenChunkAfter(chunk: DiskTailChunk): DiskTailChunk | undefined {
    const tail = this.tailChunks;
    const open = tail.at(-1)!;
    const follows = tail[tail.indexOf(chunk) + 1] === open;
    return follows && !open.onDisk && open.offsets.length === 0 ? open : undefined;
  }

  protected async loadChunk(descriptor: ChunkDescriptor): Promise<ParsedChunk> {
    const unwritten = this.#unwritten.find((chunk) => chunk.number === descriptor.number);
    if (unwritten) return { offsets: unwritten.offsets, lines: unwritten.lines };
    const bytes = await readFile(path.join(this.location, chunkFileName(descriptor.number)));
    const scan = scanChunk(bytes, undefined);
    if (scan.corrupt || !scan.sealed || scan.offsets.length !== descriptor.count) {
      throw new ShapeLogCorruptError(this.location, `${chunkFileName(descriptor.number)} changed`);
    }
    return { offsets: scan.offsets, lines: scan.lines };
  }

  protected async cutOpenChunk(chunk: DiskTailChunk, kept: number, bytes: number): Promise<void> {
    if (!chunk.onDisk) return;
    chunk.handle ??= await this.#openChunkFile(chunk.number);
    await chunk.handle.truncate(bytes);
    await chunk.handle.datasync();
    chunk.writtenBytes = chunk.journaledBytes = bytes;
  }

  /** Unindexes the cut chunks first, then deletes files newest first (see cutSealedChunks). */
  protected async cutSealedChunks(
    at: number,
    chunk: ParsedChunk,
    kept: number,
  ): Promise<ChunkDescriptor[]> {
    const openNumber = this.tailChunks.at(-1)!.number;
    await this.release();
    return cutSealedChunks(this.location, this.sealedChunks, at, chunk, kept, [openNumber]);
  }

  /** A folder on this server's disk: no other server writes it. */
  protected loadAppended(): Promise<never> {
    return Promise.reject(
      new Error(`shape log ${this.location} is on local disk: nobody else writes it`),
    );
  }

  /** Deleting: nothing journaled is written to files about to go (erase forgets it). */
  override destroy(): Promise<void> {
    this.#erased = true;
    return super.destroy();
  }

  /**
   * Writes what the journal holds into the files (a closed log owes it nothing), closes them. A
   * failed log's files are not written: what they hold after the failure is unknown, and the
   * journal keeps those lines for the next start. A log being deleted writes nothing.
   */
  protected async release(): Promise<void> {
    try {
      if (!this.failed && !this.#erased) await this.#writeJournaled();
    } finally {
      for (const chunk of this.tailChunks) {
        const { handle } = chunk;
        chunk.handle = undefined;
        await handle?.close();
      }
    }
  }

  protected async erase(): Promise<void> {
    await this.#journal?.forget(this.#name);
    await rm(this.location, { recursive: true, force: true });
  }

  #openChunkFile(number: number): Promise<FileHandle> {
    return open(path.join(this.location, chunkFileName(number)), 'a');
  }
}

/** The bytes a flush of `pending` adds to the log's files: new lines, and seal lines. */
function flushBytes(pending: readonly PendingChunk<DiskTailChunk>[]): number {
  let total = 0;
  for (const { chunk, count, sealed } of pending) {
    const from = Math.max(chunk.writtenBytes, chunk.journaledBytes);
    total += Math.max(0, chunk.lines.bytesOf(count) - from) + (sealed ? SEAL_BUFFER.length : 0);
  }
  return total;
}
