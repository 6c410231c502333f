import { mkdir, open, readFile, readdir, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { compareLogOffsets, formatLogOffset } from '@sluice/protocol';
import type { LogOffset } from '@sluice/protocol';
import {
  SEAL_BYTES,
  SEAL_LINE,
  chunkFileName,
  firstIndexAfter,
  followsInChunk,
  formatEntryLine,
  isValidOffset,
  linesBytes,
  scanChunk,
  syncDirectory,
  writeAll,
} from './chunk-file.js';
import type { ParsedChunk } from './chunk-file.js';
import { ChunkCache } from './chunk-cache.js';
import { ShapeLogCorruptError, firstChunkAfter, writeIndex } from './chunk-index.js';
import type { ChunkDescriptor } from './chunk-index.js';
import { recoverLog } from './recover-log.js';
import { newTailChunk } from './tail-chunk.js';
import type { TailChunk } from './tail-chunk.js';
import { cutSealedChunks } from './truncate-log.js';
import type { RecoveredLog } from './recover-log.js';
import type { LogEntry, ReadResult, ShapeLog } from './shape-storage.js';

export { ShapeLogCorruptError } from './chunk-index.js';

export interface DiskShapeLogOptions {
  /** A chunk is sealed at the end of the append() that makes it reach this many bytes. */
  chunkBytes: number;
  /**
   * Where sealed chunks are kept parsed for catch-up readers: one cache shared by every log
   * (bounded in bytes across all shapes). Default: a cache of the log's own, of two chunks.
   */
  chunkCache?: ChunkCache;
}

/** One entry's line as append() will buffer it, and whether its chunk is sealed after it. */
interface PlannedLine {
  text: string;
  bytes: number;
  seal: boolean;
}

function checkOptions(options: DiskShapeLogOptions): void {
  if (!(options.chunkBytes > 0)) throw new RangeError('chunkBytes must be positive');
}

/**
 * The disk backend's `ShapeLog`: one shape's chunked log in its own directory, one file per
 * chunk plus the index of sealed chunks (docs/protocol.md §3). Sealed chunks are read from disk
 * through a cache (shared by all logs); the open chunk is kept in memory for long-pollers at the tail.
 * Writes, flushes, truncation and close run one at a time through an internal queue.
 */
export class DiskShapeLog implements ShapeLog {
  /** The log's folder. */
  readonly location: string;
  readonly #chunkBytes: number;
  readonly #cache: ChunkCache;
  /** Sealed chunks whose seal line and index entry are durable. */
  #sealed: ChunkDescriptor[];
  /** Never empty: the last chunk is the open one that appends go to. */
  #tail: TailChunk[];
  #nextNumber: number;
  #lastOffset: LogOffset | undefined;
  #durableOffset: LogOffset | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #queuedFlush: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  /** truncateAfter() calls not finished: appends then would race with the cut. */
  #truncations = 0;
  /** Set when a write failed: memory and disk may disagree, so only reopening can go on. */
  #failure: unknown;

  private constructor(dir: string, options: DiskShapeLogOptions, recovered: RecoveredLog) {
    this.location = dir;
    this.#chunkBytes = options.chunkBytes;
    // A sealed chunk ends at most one entry past chunkBytes; 3 leaves room for large entries.
    this.#cache = options.chunkCache ?? new ChunkCache(3 * options.chunkBytes);
    this.#sealed = recovered.sealed;
    this.#nextNumber = recovered.nextNumber;
    const { active } = recovered;
    const openChunk = active
      ? { ...newTailChunk(active.number), ...active, durableCount: active.offsets.length }
      : newTailChunk(this.#nextNumber++);
    openChunk.onDisk = active !== undefined;
    this.#tail = [openChunk];
    this.#lastOffset = openChunk.offsets.at(-1) ?? this.#sealed.at(-1)?.last;
    this.#durableOffset = this.#lastOffset;
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

  /** Last appended offset, durable or not. */
  get lastOffset(): LogOffset | undefined {
    return this.#lastOffset;
  }

  /** Last offset that a completed flush made durable and visible. */
  get durableOffset(): LogOffset | undefined {
    return this.#durableOffset;
  }

  /** What the chunk files hold, or will once appended entries are flushed. */
  get sizeBytes(): number {
    let total = 0;
    for (const chunk of this.#sealed) total += chunk.bytes;
    for (const chunk of this.#tail) total += chunk.entryBytes + (chunk.sealed ? SEAL_BYTES : 0);
    return total;
  }

  /**
   * Buffers entries (one transaction, or one snapshot row). A chunk is sealed right after the
   * entry that brings it to `chunkBytes`, so a transaction larger than that spans several chunks
   * and no chunk exceeds the limit by more than one entry; `sealChunk` also seals the chunk that
   * holds the last entry. Offsets must increase; two entries may share a snapshot offset (tx 0)
   * only inside one chunk, so a chunk boundary never falls between equal offsets and a read
   * after an offset never cuts a chunk. Throws, changing nothing, when the order is broken.
   * Returns how many chunks this call sealed.
   */
  append(entries: readonly LogEntry[], options?: { sealChunk?: boolean }): number {
    this.#assertUsable();
    if (this.#truncations > 0) throw new Error('append() during truncateAfter()');
    const lines = this.#plan(entries, options?.sealChunk === true);
    let chunk = this.#tail.at(-1)!;
    let sealed = 0;
    entries.forEach(({ offset, json }, i) => {
      const { text, bytes, seal } = lines[i]!;
      chunk.offsets.push(offset);
      chunk.jsons.push(json);
      chunk.pending.push(text);
      chunk.entryBytes += bytes;
      this.#lastOffset = offset;
      if (seal) {
        this.#sealTail(chunk);
        chunk = this.#tail.at(-1)!;
        sealed++;
      }
    });
    if (entries.length === 0 && options?.sealChunk && chunk.offsets.length > 0) {
      this.#sealTail(chunk);
      sealed++;
    }
    return sealed;
  }

  /** Checks `entries` against the log and decides after which of them a chunk is sealed. */
  #plan(entries: readonly LogEntry[], sealLast: boolean): PlannedLine[] {
    const open = this.#tail.at(-1)!;
    let previous = this.#lastOffset;
    let chunkBytes = open.entryBytes;
    let count = open.offsets.length;
    return entries.map(({ offset, json }, i) => {
      if (!isValidOffset(offset)) throw new RangeError(`invalid log offset ${String(offset.op)}`);
      if (previous && !followsInChunk(offset, previous, count > 0)) {
        const [at, last] = [formatLogOffset(offset), formatLogOffset(previous)];
        throw new RangeError(`offset ${at} is not after ${last}`);
      }
      if (json.length === 0 || json.includes('\n')) {
        throw new RangeError(`entry ${formatLogOffset(offset)}: JSON must be one non-empty line`);
      }
      const text = formatEntryLine(offset, json);
      const lineBytes = Buffer.byteLength(text);
      chunkBytes += lineBytes;
      count++;
      const seal = chunkBytes >= this.#chunkBytes || (sealLast && i === entries.length - 1);
      if (seal) chunkBytes = count = 0;
      previous = offset;
      return { text, bytes: lineBytes, seal };
    });
  }

  /** Seals the open chunk in memory (its seal line is written by the next flush). */
  #sealTail(chunk: TailChunk): void {
    chunk.sealed = true;
    chunk.pending.push(SEAL_LINE);
    this.#tail.push(newTailChunk(this.#nextNumber++));
  }

  /**
   * Makes everything appended before the call durable and visible. Calls while a flush runs
   * share one follow-up flush, so any number of waiters cost at most two rounds of syncs.
   */
  async flush(): Promise<void> {
    this.#assertUsable();
    await (this.#queuedFlush ??= this.#enqueue(async () => {
      this.#queuedFlush = undefined; // from here on, new appends need another flush
      await this.#writePending();
    }));
  }

  /**
   * Whether a sealed chunk, durable, holds entries after `after`: a read there then serves that
   * chunk (or its rest) as every later read will, whatever is appended meanwhile.
   */
  hasSealedAfter(after: LogOffset | 'before-all'): boolean {
    const from = after === 'before-all' ? undefined : after;
    return firstChunkAfter(this.#sealed, from) < this.#sealed.length;
  }

  /** The durable entries after `after`, up to the end of the chunk holding the first of them. */
  async read(after: LogOffset | 'before-all'): Promise<ReadResult> {
    this.#assertUsable();
    const from = after === 'before-all' ? undefined : after;
    const index = firstChunkAfter(this.#sealed, from);
    const descriptor = this.#sealed[index];
    if (descriptor) {
      const chunk = await this.#loadSealed(descriptor);
      const start = from ? firstIndexAfter(chunk.offsets, chunk.offsets.length, from) : 0;
      return this.#result(chunk.jsons.slice(start), descriptor.last);
    }
    for (const chunk of this.#tail) {
      const last = chunk.offsets[chunk.durableCount - 1];
      if (last === undefined) break; // durability only grows from the front
      if (from && compareLogOffsets(last, from) <= 0) continue;
      const start = from ? firstIndexAfter(chunk.offsets, chunk.durableCount, from) : 0;
      return this.#result(chunk.jsons.slice(start, chunk.durableCount), last);
    }
    return { entries: [], lastOffset: undefined, reachedEnd: true };
  }

  /** The last durable entry, read from its chunk (recovery looks at how the log ends). */
  async lastEntry(): Promise<LogEntry | undefined> {
    this.#assertUsable();
    for (const chunk of [...this.#tail].reverse()) {
      const index = chunk.durableCount - 1;
      if (index >= 0) return { offset: chunk.offsets[index]!, json: chunk.jsons[index]! };
    }
    const descriptor = this.#sealed.at(-1);
    if (!descriptor) return undefined;
    const chunk = await this.#loadSealed(descriptor);
    return { offset: chunk.offsets.at(-1)!, json: chunk.jsons.at(-1)! };
  }

  /**
   * Drops every entry after `offset`, durable or not, for recovery. A sealed chunk that is cut
   * stays sealed; later appends start a new chunk. Must not overlap read() calls.
   */
  async truncateAfter(offset: LogOffset | 'before-all'): Promise<void> {
    this.#assertUsable();
    this.#truncations++;
    try {
      await this.#enqueue(async () => {
        await this.#writePending();
        await this.#cut(offset === 'before-all' ? undefined : offset);
      });
    } catch (error) {
      this.#failure ??= error; // a cut that stopped part way leaves memory and disk apart
      throw error;
    } finally {
      this.#truncations--;
    }
  }

  /** Flushes what was appended and releases the open file. Later calls are refused. */
  close(): Promise<void> {
    this.#closing ??= this.#enqueue(async () => {
      try {
        if (this.#failure === undefined) await this.#writePending();
      } finally {
        await this.#closeFiles();
        this.#cache.forgetLog(this.location);
      }
    });
    return this.#closing;
  }

  /** Closes without flushing and deletes the whole directory. */
  async destroy(): Promise<void> {
    this.#closing ??= Promise.resolve();
    await this.#enqueue(async () => {
      await this.#closeFiles();
      this.#cache.forgetLog(this.location);
      await rm(this.location, { recursive: true, force: true });
    });
  }

  #assertUsable(): void {
    if (this.#closing) throw new Error(`shape log ${this.location} is closed`);
    if (this.#failure !== undefined) throw this.#failedError();
  }

  #failedError(): Error {
    return new Error(`shape log ${this.location} failed; reopen it`, { cause: this.#failure });
  }

  #enqueue<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(operation);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  #result(entries: string[], last: LogOffset): ReadResult {
    const durable = this.#durableOffset;
    return {
      entries,
      lastOffset: last,
      reachedEnd: durable === undefined || compareLogOffsets(durable, last) <= 0,
    };
  }

  /**
   * One write plus fdatasync per dirty chunk file, in chunk order (so a later chunk never has
   * bytes on disk before an earlier one is complete), then the index if chunks were sealed,
   * and only then the new state becomes visible to read().
   */
  async #writePending(): Promise<void> {
    if (this.#failure !== undefined) throw this.#failedError();
    const work = this.#tail
      .filter((chunk) => chunk.pending.length > 0)
      .map((chunk) => {
        const buffer = Buffer.from(chunk.pending.join(''));
        chunk.pending = [];
        return { chunk, buffer, count: chunk.offsets.length, sealed: chunk.sealed };
      });
    if (work.length === 0) return;
    try {
      const newlySealed: ChunkDescriptor[] = [];
      for (const { chunk, buffer, sealed } of work) {
        chunk.handle ??= await this.#openChunkFile(chunk.number);
        const handle = chunk.handle;
        await writeAll(handle, buffer);
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
          newlySealed.push({
            number: chunk.number,
            first: chunk.offsets[0]!,
            last: chunk.offsets.at(-1)!,
            count: chunk.offsets.length,
            bytes: chunk.entryBytes + SEAL_BYTES,
          });
        }
      }
      if (newlySealed.length > 0)
        await writeIndex(this.location, [...this.#sealed, ...newlySealed]);

      for (const { chunk, count } of work) chunk.durableCount = count;
      // Sealed chunks are at the front of the tail, in order: move them to the index, keeping
      // their parsed entries cached since readers at the tail are about to ask for them.
      for (const chunk of this.#tail.splice(0, newlySealed.length)) {
        const parsed = Promise.resolve({ offsets: chunk.offsets, jsons: chunk.jsons });
        this.#cache.set(this.location, chunk.number, parsed, chunk.entryBytes + SEAL_BYTES);
      }
      this.#sealed.push(...newlySealed);
      const lastWritten = work.at(-1)!;
      this.#durableOffset = lastWritten.chunk.offsets[lastWritten.count - 1] ?? this.#durableOffset;
    } catch (error) {
      this.#failure = error;
      throw error;
    }
  }

  /** The open chunk right after `chunk` when it holds nothing and has no file yet. */
  #emptyOpenChunkAfter(chunk: TailChunk): TailChunk | undefined {
    const open = this.#tail.at(-1)!;
    const follows = this.#tail[this.#tail.indexOf(chunk) + 1] === open;
    return follows && !open.onDisk && open.offsets.length === 0 ? open : undefined;
  }

  #loadSealed(descriptor: ChunkDescriptor): Promise<ParsedChunk> {
    const cached = this.#cache.get(this.location, descriptor.number);
    if (cached) return cached;
    const file = path.join(this.location, chunkFileName(descriptor.number));
    const loading = readFile(file).then((bytes) => {
      const scan = scanChunk(bytes, undefined);
      if (scan.corrupt || !scan.sealed || scan.offsets.length !== descriptor.count) {
        throw new ShapeLogCorruptError(
          this.location,
          `${chunkFileName(descriptor.number)} changed`,
        );
      }
      return { offsets: scan.offsets, jsons: scan.jsons };
    });
    this.#cache.set(this.location, descriptor.number, loading, descriptor.bytes);
    loading.catch(() => this.#cache.forget(this.location, descriptor.number, loading));
    return loading;
  }

  async #closeFiles(): Promise<void> {
    for (const chunk of this.#tail) {
      const { handle } = chunk;
      chunk.handle = undefined;
      await handle?.close();
    }
  }

  /**
   * Runs after #writePending, so the tail is just the open chunk and everything is on disk.
   * Cutting into sealed chunks first unindexes them, then deletes files newest first, so a
   * crash part way leaves a prefix of the log that recovery accepts.
   */
  async #cut(after: LogOffset | undefined): Promise<void> {
    const openChunk = this.#tail.at(-1)!;
    const index = firstChunkAfter(this.#sealed, after);
    const cut = this.#sealed[index];
    if (!cut) {
      const kept = after ? firstIndexAfter(openChunk.offsets, openChunk.offsets.length, after) : 0;
      if (kept === openChunk.offsets.length) return;
      const bytes = linesBytes(openChunk, kept);
      if (openChunk.onDisk) {
        openChunk.handle ??= await this.#openChunkFile(openChunk.number);
        await openChunk.handle.truncate(bytes);
        await openChunk.handle.datasync();
      }
      openChunk.offsets.length = openChunk.jsons.length = openChunk.durableCount = kept;
      openChunk.entryBytes = bytes;
    } else {
      const chunk = await this.#loadSealed(cut);
      const kept = after ? firstIndexAfter(chunk.offsets, chunk.offsets.length, after) : 0;
      await this.#closeFiles();
      const laterFiles = [openChunk.number];
      this.#sealed = await cutSealedChunks(
        this.location,
        this.#sealed,
        index,
        chunk,
        kept,
        laterFiles,
      );
      this.#tail = [newTailChunk(this.#nextNumber++)];
      this.#cache.forgetLog(this.location);
    }
    const tailLast = this.#tail.at(-1)!.offsets.at(-1);
    this.#lastOffset = this.#durableOffset = tailLast ?? this.#sealed.at(-1)?.last;
  }

  #openChunkFile(number: number): Promise<FileHandle> {
    return open(path.join(this.location, chunkFileName(number)), 'a');
  }
}
