import { compareLogOffsets, formatLogOffset } from '@sluice/protocol';
import type { LogOffset } from '@sluice/protocol';
import {
  SEAL_BYTES,
  firstIndexAfter,
  followsInChunk,
  lineBytes,
  isValidOffset,
} from './chunk-file.js';
import type { ParsedChunk } from './chunk-file.js';
import type { ChunkCache } from './chunk-cache.js';
import { ChunkLines } from './chunk-lines.js';
import { firstChunkAfter } from './chunk-index.js';
import { chunkLimit } from './chunk-limit.js';
import type { ChunkDescriptor } from './chunk-index.js';
import { describeChunk } from './tail-chunk.js';
import type { TailChunk } from './tail-chunk.js';
import type { EncodedRows } from './encoded-rows.js';
import type { LogEntry, ReadResult, ShapeLog } from './shape-storage.js';

/** A tail chunk a flush persists: its entries up to `count`, and its seal when `sealed`. */
export interface PendingChunk<Chunk extends TailChunk> {
  chunk: Chunk;
  count: number;
  sealed: boolean;
}

/**
 * What every backend's `ShapeLog` shares: the chunked log of docs/protocol.md §3 held in memory
 * as sealed chunk descriptors plus the tail chunks (the open one and those sealed since the last
 * flush), with the sealing rules, byte accounting, reads that never cross a chunk, durability
 * only after a flush, and one queue that runs flushes, truncation and close one at a time. So
 * the backends cannot drift apart in semantics; each says only how chunks are persisted, loaded
 * and cut (the protected abstract methods).
 */
export abstract class ChunkedShapeLog<Chunk extends TailChunk> implements ShapeLog {
  /** Where the log lives, for messages and the chunk cache: its folder or its Redis tag. */
  readonly location: string;
  readonly #chunkBytes: number;
  readonly #cache: ChunkCache;
  /** Sealed chunks whose seal and index entry are durable. */
  #sealed: ChunkDescriptor[];
  /** Never empty: the last chunk is the open one that appends go to. */
  #tail: Chunk[];
  #nextNumber: number;
  #lastOffset: LogOffset | undefined;
  #durableOffset: LogOffset | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #queuedFlush: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  /** truncateAfter() calls not finished: appends then would race with the cut. */
  #truncations = 0;
  /** Set when a write failed: memory and storage may disagree, so only reopening can go on. */
  #failure: unknown;

  /** `nextNumber` numbers the chunk after `open` (a disk recovery may have skipped numbers). */
  protected constructor(
    location: string,
    options: { chunkBytes: number; chunkCache: ChunkCache },
    sealed: ChunkDescriptor[],
    open: Chunk,
    nextNumber: number,
  ) {
    if (!(options.chunkBytes > 0)) throw new RangeError('chunkBytes must be positive');
    this.location = location;
    this.#chunkBytes = options.chunkBytes;
    this.#cache = options.chunkCache;
    this.#sealed = sealed;
    this.#tail = [open];
    this.#nextNumber = nextNumber;
    this.#lastOffset = open.offsets.at(-1) ?? sealed.at(-1)?.last;
    this.#durableOffset = this.#lastOffset;
  }

  /** A new, empty tail chunk with the backend's persistence state. */
  protected abstract newChunk(number: number): Chunk;

  /**
   * Makes the `pending` chunks durable, in order, and the `newlySealed` ones' descriptors part of
   * the index, before returning: each chunk's entries up to its `count` (its lines, read from
   * `chunk.lines` before anything is awaited: appends meanwhile come after them) and its seal.
   */
  protected abstract persist(
    pending: readonly PendingChunk<Chunk>[],
    newlySealed: readonly ChunkDescriptor[],
  ): Promise<void>;

  /** Whether a failed persist() left storage as it was, so a later flush may try again. */
  protected isRetryable(error: unknown): boolean {
    void error;
    return false;
  }

  /** Reads a sealed chunk from storage, checking it against its descriptor. */
  protected abstract loadChunk(descriptor: ChunkDescriptor): Promise<ParsedChunk>;

  /** Keeps the first `kept` entries (`bytes` of lines) of the open chunk, all durable. */
  protected abstract cutOpenChunk(chunk: Chunk, kept: number, bytes: number): Promise<void>;

  /**
   * Keeps the sealed chunks before `at` and the first `kept` entries of `sealed[at]` (held in
   * `chunk`), sealed, deleting every later chunk and the open one; the next open chunk is the
   * one numbered `nextOpen`. Returns the new index. Must leave a log that reopens as a prefix.
   */
  protected abstract cutSealedChunks(
    at: number,
    chunk: ParsedChunk,
    kept: number,
    nextOpen: number,
  ): Promise<ChunkDescriptor[]>;

  /**
   * What another server appended since (`refresh`): the descriptors of chunks sealed since
   * `sealedCount` (in order), and the open chunk as stored now, which is `open` grown in place
   * (its new entries durable) when it is still the open one, else a new chunk.
   */
  protected abstract loadAppended(
    sealedCount: number,
    open: Chunk,
  ): Promise<{ sealed: ChunkDescriptor[]; open: Chunk }>;

  /**
   * Runs before a cut, outside the log's queue, once everything appended is persisted: a backend
   * whose storage could write cut bytes back later (the disk's journal) makes sure it cannot.
   */
  protected async prepareCut(): Promise<void> {}

  /**
   * Runs `operation` in the log's queue: after the flushes, cuts and closing queued before it.
   * It writes storage, so its failure fails the log (memory and storage may disagree: only
   * reopening can go on); on a failed log it does not run.
   */
  protected exclusive<T>(operation: () => Promise<T>): Promise<T> {
    return this.#enqueue(async () => {
      if (this.#failure !== undefined) throw this.#failedError();
      try {
        return await operation();
      } catch (error) {
        this.#failure ??= error;
        throw error;
      }
    });
  }

  /** A write failed: the log is unusable until it is reopened. */
  protected get failed(): boolean {
    return this.#failure !== undefined;
  }

  /** Releases what the log holds open, on close() and destroy(). */
  protected abstract release(): Promise<void>;

  /** Deletes the whole log from storage, after release(). */
  protected abstract erase(): Promise<void>;

  protected get sealedChunks(): readonly ChunkDescriptor[] {
    return this.#sealed;
  }

  protected get tailChunks(): readonly Chunk[] {
    return this.#tail;
  }

  /** Last appended offset, durable or not. */
  get lastOffset(): LogOffset | undefined {
    return this.#lastOffset;
  }

  /** Last offset that a completed flush made durable and visible. */
  get durableOffset(): LogOffset | undefined {
    return this.#durableOffset;
  }

  /** What the stored chunks hold, or will once appended entries are flushed. */
  get sizeBytes(): number {
    let total = 0;
    for (const chunk of this.#sealed) total += chunk.bytes;
    for (const chunk of this.#tail)
      total += chunk.lines.bytesOf() + (chunk.sealed ? SEAL_BYTES : 0);
    return total;
  }

  /**
   * Buffers entries (one transaction, or one snapshot row). A chunk is sealed right after the
   * entry that brings it to its limit (`chunkLimit`: small first chunks, then `chunkBytes`), so
   * a transaction larger than that spans several chunks and no chunk exceeds the limit by more
   * than one entry; `sealChunk` also seals the chunk that
   * holds the last entry. Offsets must increase; two entries may share a snapshot offset (tx 0)
   * only inside one chunk, so a chunk boundary never falls between equal offsets and a read
   * after an offset never cuts a chunk. Throws, changing nothing, when the order is broken.
   * Returns how many chunks this call sealed.
   */
  append(entries: readonly LogEntry[], options?: { sealChunk?: boolean }): number {
    this.#assertUsable();
    if (this.#truncations > 0) throw new Error('append() during truncateAfter()');
    const sealLast = options?.sealChunk === true;
    // Each entry's offset as text, made once: checked, then written. Plain loops: this runs once
    // per shape a transaction touches, so its set-up costs as much as its entries.
    const texts = this.#check(entries, sealLast);
    let sealed = 0;
    for (let i = 0; i < entries.length; i++) {
      const { offset, json } = entries[i]!;
      if (this.#push(offset, texts[i]!, json, sealLast && i === entries.length - 1)) sealed++;
    }
    const open = this.#tail.at(-1)!;
    if (entries.length === 0 && sealLast && open.offsets.length > 0) {
      this.#sealTail(open);
      sealed++;
    }
    return sealed;
  }

  /**
   * Appends snapshot rows: each at `0_c`, where c is `op` for the first row and grows by one at
   * every seal (every row of snapshot chunk c is at `0_c`). Appending them one by one with those
   * offsets does the same; this takes a whole batch in one call, with one offset per chunk, and
   * copies each row's bytes as they are. Throws, changing nothing, when `0_op` may not follow the
   * log's last entry or a row is not one non-empty line. Returns how many chunks it sealed.
   */
  appendSnapshotRows(op: number, rows: EncodedRows): number {
    this.#assertUsable();
    if (this.#truncations > 0) throw new Error('append() during truncateAfter()');
    let offset: LogOffset = { tx: 0n, op };
    let text = formatLogOffset(offset);
    if (!isValidOffset(offset)) throw new RangeError(`invalid log offset ${text}`);
    const previous = this.#lastOffset;
    if (previous && !followsInChunk(offset, previous, this.#tail.at(-1)!.offsets.length > 0)) {
      throw new RangeError(`offset ${text} is not after ${formatLogOffset(previous)}`);
    }
    const { bytes, ends } = rows;
    const newline = bytes.indexOf(0x0a);
    if (newline !== -1 && newline < (ends.at(-1) ?? 0)) {
      throw new RangeError(`entry ${text}: JSON must be one non-empty line`);
    }
    for (let i = 0; i < ends.length; i++) {
      if (ends[i]! <= (i === 0 ? 0 : ends[i - 1]!)) {
        throw new RangeError(`entry ${text}: JSON must be one non-empty line`);
      }
    }
    let sealed = 0;
    let from = 0;
    for (const to of ends) {
      const chunk = this.#tail.at(-1)!;
      chunk.lines.appendBytes(text, bytes, from, to);
      from = to;
      if (!this.#added(chunk, offset, false)) continue;
      sealed++;
      offset = { tx: 0n, op: offset.op + 1 };
      text = formatLogOffset(offset);
    }
    return sealed;
  }

  /** Adds a line to the open chunk (see `#added`); true if it sealed the chunk. */
  #push(offset: LogOffset, text: string, json: string, seal: boolean): boolean {
    const chunk = this.#tail.at(-1)!;
    chunk.lines.append(text, json);
    return this.#added(chunk, offset, seal);
  }

  /**
   * Takes note of the line just added to the open chunk `chunk` at `offset`, and seals the chunk
   * when that line filled it, or when `seal`. Returns whether it sealed the chunk.
   */
  #added(chunk: Chunk, offset: LogOffset, seal: boolean): boolean {
    chunk.offsets.push(offset);
    this.#lastOffset = offset;
    if (!seal && chunk.lines.bytesOf() < chunkLimit(chunk.number, this.#chunkBytes)) return false;
    this.#sealTail(chunk);
    return true;
  }

  /**
   * Checks `entries` against the log before any is appended, and returns their offsets as text.
   * Two equal offsets (snapshot rows) may not have a chunk boundary between them, so when a call
   * holds such neighbours, where its chunks will be sealed is worked out first from the lines'
   * sizes; otherwise no entry needs measuring here (append counts the bytes as it writes them).
   */
  #check(entries: readonly LogEntry[], sealLast: boolean): string[] {
    const open = this.#tail.at(-1)!;
    let sealsMatter = false;
    for (let i = 1; i < entries.length && !sealsMatter; i++) {
      sealsMatter = compareLogOffsets(entries[i]!.offset, entries[i - 1]!.offset) === 0;
    }
    let previous = this.#lastOffset;
    let inChunk = open.offsets.length > 0;
    let chunkBytes = open.lines.bytesOf();
    let limit = chunkLimit(open.number, this.#chunkBytes);
    let nextNumber = this.#nextNumber;
    const texts = new Array<string>(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const { offset, json } = entries[i]!;
      if (!isValidOffset(offset)) throw new RangeError(`invalid log offset ${String(offset.op)}`);
      const text = formatLogOffset(offset);
      if (previous && !followsInChunk(offset, previous, inChunk)) {
        throw new RangeError(`offset ${text} is not after ${formatLogOffset(previous)}`);
      }
      checkLine(text, json);
      inChunk = true;
      if (sealsMatter) {
        chunkBytes += lineBytes(text, json);
        if (chunkBytes >= limit || (sealLast && i === entries.length - 1)) {
          chunkBytes = 0;
          inChunk = false;
          limit = chunkLimit(nextNumber++, this.#chunkBytes);
        }
      }
      previous = offset;
      texts[i] = text;
    }
    return texts;
  }

  /** Seals the open chunk in memory (the next flush persists the seal). */
  #sealTail(chunk: Chunk): void {
    chunk.sealed = true;
    this.#tail.push(this.newChunk(this.#nextNumber++));
  }

  /**
   * Makes everything appended before the call durable and visible. Calls while a flush runs
   * share one follow-up flush, so any number of waiters cost at most two rounds of writes.
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
    const descriptor = this.#sealed[firstChunkAfter(this.#sealed, from)];
    if (descriptor) {
      const chunk = await this.#loadSealed(descriptor);
      const start = from ? firstIndexAfter(chunk.offsets, chunk.offsets.length, from) : 0;
      return this.#result(chunk.lines, start, chunk.offsets.length, descriptor.last);
    }
    for (const chunk of this.#tail) {
      const last = chunk.offsets[chunk.durableCount - 1];
      if (last === undefined) break; // durability only grows from the front
      if (from && compareLogOffsets(last, from) <= 0) continue;
      const start = from ? firstIndexAfter(chunk.offsets, chunk.durableCount, from) : 0;
      return this.#result(chunk.lines, start, chunk.durableCount, last);
    }
    return this.#result(ChunkLines.empty(), 0, 0, undefined);
  }

  /** The last durable entry, read from its chunk (recovery looks at how the log ends). */
  async lastEntry(): Promise<LogEntry | undefined> {
    this.#assertUsable();
    for (const chunk of [...this.#tail].reverse()) {
      const index = chunk.durableCount - 1;
      if (index >= 0) return { offset: chunk.offsets[index]!, json: chunk.lines.json(index) };
    }
    const descriptor = this.#sealed.at(-1);
    if (!descriptor) return undefined;
    const chunk = await this.#loadSealed(descriptor);
    return { offset: chunk.offsets.at(-1)!, json: chunk.lines.json(chunk.offsets.length - 1) };
  }

  /**
   * Drops every entry after `offset`, durable or not, for recovery. A sealed chunk that is cut
   * stays sealed; later appends start a new chunk. Must not overlap read() calls.
   */
  async truncateAfter(offset: LogOffset | 'before-all'): Promise<void> {
    this.#assertUsable();
    this.#truncations++;
    try {
      // No append can come between these (appends are refused meanwhile).
      await this.#enqueue(() => this.#writePending());
      await this.prepareCut();
      await this.#enqueue(() => this.#cut(offset === 'before-all' ? undefined : offset));
    } catch (error) {
      this.#failure ??= error; // a cut that stopped part way leaves memory and storage apart
      throw error;
    } finally {
      this.#truncations--;
    }
  }

  /**
   * Takes in what another server appended to the stored log (see `loadAppended`). Runs in the
   * log's queue, so it never overlaps a flush, a cut or closing.
   */
  async refresh(): Promise<void> {
    this.#assertUsable();
    await this.#enqueue(async () => {
      const open = this.#tail.at(-1)!;
      if (this.#tail.length > 1 || open.durableCount < open.offsets.length) {
        throw new Error(`shape log ${this.location} has unflushed appends: it is not a reader's`);
      }
      const appended = await this.loadAppended(this.#sealed.length, open);
      this.#sealed.push(...appended.sealed);
      this.#tail = [appended.open];
      this.#nextNumber = appended.open.number + 1;
      this.#lastOffset = appended.open.offsets.at(-1) ?? this.#sealed.at(-1)?.last;
      this.#durableOffset = this.#lastOffset;
    });
  }

  /** Flushes what was appended and releases what the log holds. Later calls are refused. */
  close(): Promise<void> {
    this.#closing ??= this.#enqueue(async () => {
      try {
        if (this.#failure === undefined) await this.#writePending();
      } finally {
        await this.release();
        this.#cache.forgetLog(this.location);
      }
    });
    return this.#closing;
  }

  /** Closes without flushing and deletes the whole log. */
  async destroy(): Promise<void> {
    this.#closing ??= Promise.resolve();
    await this.#enqueue(async () => {
      await this.release();
      this.#cache.forgetLog(this.location);
      await this.erase();
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

  /**
   * Entries `from` to `to` of `lines`, decoded only when asked for (`entries`). `jsonArray` is
   * not enumerable: a result compares equal to another by what it holds, not by its functions.
   */
  #result(lines: ChunkLines, from: number, to: number, last: LogOffset | undefined): ReadResult {
    const durable = this.#durableOffset;
    const result = {
      get entries() {
        return lines.jsons(from, to);
      },
      lastOffset: last,
      reachedEnd: !last || !durable || compareLogOffsets(durable, last) <= 0,
    };
    const jsonArray = (extra: readonly string[]) => lines.jsonArray(from, to, extra);
    return Object.defineProperty(result, 'jsonArray', { value: jsonArray }) as ReadResult;
  }

  /** Persists every appended entry and seal; only then does the new state become visible. */
  async #writePending(): Promise<void> {
    if (this.#failure !== undefined) throw this.#failedError();
    const pending = this.#tail
      .filter((chunk) => chunk.durableCount < chunk.offsets.length || chunk.sealed)
      .map((chunk) => ({ chunk, count: chunk.offsets.length, sealed: chunk.sealed }));
    if (pending.length === 0) return;
    const newlySealed = pending
      .filter((item) => item.sealed)
      .map(({ chunk }) => describeChunk(chunk));
    try {
      await this.persist(pending, newlySealed);
    } catch (error) {
      if (!this.isRetryable(error)) this.#failure = error;
      throw error;
    }
    for (const { chunk, count } of pending) chunk.durableCount = count;
    // Sealed chunks are at the front of the tail, in order: move them to the index, keeping
    // their parsed entries cached since readers at the tail are about to ask for them. Arrays
    // are copied rather than spliced or pushed into: a copy keeps no room for more items, which
    // thousands of idle shapes would each hold (ChunkLines.compact).
    const sealedTail = this.#tail.slice(0, newlySealed.length);
    if (sealedTail.length > 0) this.#tail = this.#tail.slice(sealedTail.length);
    for (const chunk of sealedTail) {
      chunk.lines.compact();
      const parsed = Promise.resolve({ offsets: chunk.offsets.slice(), lines: chunk.lines });
      this.#cache.set(this.location, chunk.number, parsed, chunk.lines.bytesOf() + SEAL_BYTES);
    }
    if (newlySealed.length > 0) this.#sealed = [...this.#sealed, ...newlySealed];
    const lastWritten = pending.at(-1)!;
    this.#durableOffset = lastWritten.chunk.offsets[lastWritten.count - 1] ?? this.#durableOffset;
  }

  /** A sealed chunk's entries, through the cache shared by every log. */
  #loadSealed(descriptor: ChunkDescriptor): Promise<ParsedChunk> {
    const cached = this.#cache.get(this.location, descriptor.number);
    if (cached) return cached;
    const loading = this.loadChunk(descriptor);
    this.#cache.set(this.location, descriptor.number, loading, descriptor.bytes);
    loading.catch(() => this.#cache.forget(this.location, descriptor.number, loading));
    return loading;
  }

  /** Runs after #writePending, so the tail is just the open chunk and all of it is durable. */
  async #cut(after: LogOffset | undefined): Promise<void> {
    const openChunk = this.#tail.at(-1)!;
    const index = firstChunkAfter(this.#sealed, after);
    const cut = this.#sealed[index];
    if (!cut) {
      const kept = after ? firstIndexAfter(openChunk.offsets, openChunk.offsets.length, after) : 0;
      if (kept === openChunk.offsets.length) return;
      const bytes = openChunk.lines.bytesOf(kept);
      await this.cutOpenChunk(openChunk, kept, bytes);
      openChunk.offsets.length = openChunk.durableCount = kept;
      openChunk.lines.truncate(kept);
    } else {
      const chunk = await this.#loadSealed(cut);
      const kept = after ? firstIndexAfter(chunk.offsets, chunk.offsets.length, after) : 0;
      this.#sealed = await this.cutSealedChunks(index, chunk, kept, this.#nextNumber);
      this.#tail = [this.newChunk(this.#nextNumber++)];
      this.#cache.forgetLog(this.location);
    }
    const tailLast = this.#tail.at(-1)!.offsets.at(-1);
    this.#lastOffset = this.#durableOffset = tailLast ?? this.#sealed.at(-1)?.last;
  }
}

/** An entry is one line of the chunk: its JSON may be neither empty nor hold a newline. */
function checkLine(offsetText: string, json: string): void {
  if (json.length === 0 || json.includes('\n')) {
    throw new RangeError(`entry ${offsetText}: JSON must be one non-empty line`);
  }
}
