import { compareLogOffsets, formatLogOffset, parseLogOffset } from '@sluice/protocol';
import type { LogOffset } from '@sluice/protocol';
import type { ChainableCommander } from 'ioredis';
import {
  SEAL_BYTES,
  entryLineBytes,
  firstIndexAfter,
  followsInChunk,
  isValidOffset,
} from './chunk-file.js';
import type { ParsedChunk } from './chunk-file.js';
import type { ChunkCache } from './chunk-cache.js';
import { ShapeLogCorruptError, firstChunkAfter } from './chunk-index.js';
import type { ChunkDescriptor } from './chunk-index.js';
import { RedisUnavailableError } from './redis-connection.js';
import type { RedisClient, RedisConnection } from './redis-connection.js';
import type { ShapeKeys } from './redis-keys.js';
import type { LogEntry, ReadResult, ShapeLog } from './shape-storage.js';

/** The Lua flush (redis-flush-script.ts), defined on the connection by `RedisShapeStorage`. */
type FlushCommand = (numberOfKeys: number, ...keysAndArgs: (string | number)[]) => Promise<string>;
type RedisWithFlush = RedisClient & { sluiceFlush: FlushCommand };

export interface RedisShapeLogOptions {
  connection: RedisConnection;
  keys: ShapeKeys;
  chunkBytes: number;
  chunkCache: ChunkCache;
}

/** A chunk not yet sealed durably: the open one, plus any sealed since the last flush. */
interface TailChunk {
  readonly number: number;
  readonly offsets: LogOffset[];
  readonly jsons: string[];
  /** The entries as stored: `<offset> <json>`. */
  readonly stored: string[];
  /** Bytes the entries count for against `chunkBytes`: as many as on disk, so both seal alike. */
  entryBytes: number;
  /** Sealed in memory at the end of an append(); durable once a flush wrote its descriptor. */
  sealed: boolean;
  /** Entries in Redis; only these are visible to read(). */
  durableCount: number;
}

function newTailChunk(number: number): TailChunk {
  return {
    number,
    offsets: [],
    jsons: [],
    stored: [],
    entryBytes: 0,
    sealed: false,
    durableCount: 0,
  };
}

interface StoredDescriptor {
  number: number;
  first: string;
  last: string;
  count: number;
  bytes: number;
}

/** What `open()` read of a log, in one atomic MULTI. */
export interface StoredLog {
  open: number;
  sealed: string[];
  openEntries: string[];
}

/** Keeps the first `count` items of a list (LTRIM to -1, for none, would keep them all). */
function keepFirst(multi: ChainableCommander, key: string, count: number): ChainableCommander {
  return count === 0 ? multi.del(key) : multi.ltrim(key, 0, count - 1);
}

/** Runs a MULTI, failing when it or any of its commands did. */
async function execAll(multi: ChainableCommander): Promise<void> {
  const results = await multi.exec();
  const failed = results?.find(([error]) => error);
  if (!results || failed) throw failed?.[0] ?? new Error('MULTI was discarded');
}

function storedEntry(offset: LogOffset, json: string): string {
  return `${formatLogOffset(offset)} ${json}`;
}

function parseStoredEntry(text: string): { offset: LogOffset; json: string } | undefined {
  const space = text.indexOf(' ');
  const offset = space > 0 ? parseLogOffset(text.slice(0, space)) : undefined;
  return offset && space < text.length - 1 ? { offset, json: text.slice(space + 1) } : undefined;
}

function describe(chunk: TailChunk): ChunkDescriptor {
  return {
    number: chunk.number,
    first: chunk.offsets[0]!,
    last: chunk.offsets.at(-1)!,
    count: chunk.offsets.length,
    bytes: chunk.entryBytes + SEAL_BYTES,
  };
}

function formatDescriptor(chunk: ChunkDescriptor): string {
  const { number, count, bytes } = chunk;
  const [first, last] = [formatLogOffset(chunk.first), formatLogOffset(chunk.last)];
  return JSON.stringify({ number, first, last, count, bytes } satisfies StoredDescriptor);
}

/**
 * The shape log of docs/protocol.md §3 in Redis, with exactly the disk log's semantics
 * (`ShapeLog` in shape-log.ts): the same sealing rules and byte accounting, reads that never
 * cross a chunk, durability only after a flush. Each chunk is a Redis list of entries; a
 * sealed chunk's descriptor goes to the sealed list in the same script as its last entries, so
 * the index never names an incomplete chunk. Sealed chunks are read with one LRANGE and kept
 * parsed in the shared `ChunkCache`; the open chunk stays in memory for readers at the tail.
 *
 * A flush that fails for want of Redis leaves its entries pending, and the next flush sends them
 * again (the script is idempotent); a flush Redis refuses because the log is not what this
 * object holds fails the log: only reopening can go on.
 */
export class RedisShapeLog implements ShapeLog {
  readonly location: string;
  readonly #connection: RedisConnection;
  readonly #keys: ShapeKeys;
  readonly #chunkBytes: number;
  readonly #cache: ChunkCache;
  #sealed: ChunkDescriptor[];
  /** Never empty: the last chunk is the open one that appends go to. */
  #tail: TailChunk[];
  #lastOffset: LogOffset | undefined;
  #durableOffset: LogOffset | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #queuedFlush: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #truncations = 0;
  #failure: unknown;

  private constructor(options: RedisShapeLogOptions, sealed: ChunkDescriptor[], open: TailChunk) {
    if (!(options.chunkBytes > 0)) throw new RangeError('chunkBytes must be positive');
    this.location = options.keys.tag;
    this.#connection = options.connection;
    this.#keys = options.keys;
    this.#chunkBytes = options.chunkBytes;
    this.#cache = options.chunkCache;
    this.#sealed = sealed;
    this.#tail = [open];
    this.#lastOffset = open.offsets.at(-1) ?? sealed.at(-1)?.last;
    this.#durableOffset = this.#lastOffset;
  }

  /** An empty log, its hash already created by the storage. */
  static created(options: RedisShapeLogOptions): RedisShapeLog {
    return new RedisShapeLog(options, [], newTailChunk(1));
  }

  /** A log as `stored`; throws `ShapeLogCorruptError` when it does not make sense. */
  static opened(options: RedisShapeLogOptions, stored: StoredLog): RedisShapeLog {
    const corrupt = (problem: string) => new ShapeLogCorruptError(options.keys.tag, problem);
    const sealed: ChunkDescriptor[] = [];
    for (const text of stored.sealed) {
      const item = JSON.parse(text) as Partial<StoredDescriptor>;
      const first = typeof item.first === 'string' ? parseLogOffset(item.first) : undefined;
      const last = typeof item.last === 'string' ? parseLogOffset(item.last) : undefined;
      const { number, count, bytes } = item;
      const previous = sealed.at(-1);
      if (
        !first ||
        !last ||
        !Number.isSafeInteger(number) ||
        !Number.isSafeInteger(count) ||
        !Number.isSafeInteger(bytes) ||
        number! >= stored.open ||
        (previous && (number! <= previous.number || compareLogOffsets(first, previous.last) <= 0))
      ) {
        throw corrupt(`sealed chunk descriptor ${text} is invalid`);
      }
      sealed.push({ number: number!, first, last, count: count!, bytes: bytes! });
    }
    const open = newTailChunk(stored.open);
    let previous = sealed.at(-1)?.last;
    for (const text of stored.openEntries) {
      const entry = parseStoredEntry(text);
      if (
        !entry ||
        (previous && !followsInChunk(entry.offset, previous, open.offsets.length > 0))
      ) {
        throw corrupt(`chunk ${stored.open} holds an invalid entry: ${text.slice(0, 80)}`);
      }
      open.offsets.push(entry.offset);
      open.jsons.push(entry.json);
      open.stored.push(text);
      open.entryBytes += entryLineBytes(entry.offset, entry.json);
      previous = entry.offset;
    }
    open.durableCount = open.offsets.length;
    return new RedisShapeLog(options, sealed, open);
  }

  get lastOffset(): LogOffset | undefined {
    return this.#lastOffset;
  }

  get durableOffset(): LogOffset | undefined {
    return this.#durableOffset;
  }

  get sizeBytes(): number {
    let total = 0;
    for (const chunk of this.#sealed) total += chunk.bytes;
    for (const chunk of this.#tail) total += chunk.entryBytes + (chunk.sealed ? SEAL_BYTES : 0);
    return total;
  }

  append(entries: readonly LogEntry[], options?: { sealChunk?: boolean }): number {
    this.#assertUsable();
    if (this.#truncations > 0) throw new Error('append() during truncateAfter()');
    const seals = this.#plan(entries, options?.sealChunk === true);
    let chunk = this.#tail.at(-1)!;
    let sealed = 0;
    entries.forEach(({ offset, json }, i) => {
      chunk.offsets.push(offset);
      chunk.jsons.push(json);
      chunk.stored.push(storedEntry(offset, json));
      chunk.entryBytes += entryLineBytes(offset, json);
      this.#lastOffset = offset;
      if (seals[i]) {
        chunk = this.#sealTail(chunk);
        sealed++;
      }
    });
    if (entries.length === 0 && options?.sealChunk && chunk.offsets.length > 0) {
      this.#sealTail(chunk);
      sealed++;
    }
    return sealed;
  }

  /** Checks `entries` against the log (as the disk log does) and says after which to seal. */
  #plan(entries: readonly LogEntry[], sealLast: boolean): boolean[] {
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
      chunkBytes += entryLineBytes(offset, json);
      count++;
      const seal = chunkBytes >= this.#chunkBytes || (sealLast && i === entries.length - 1);
      if (seal) chunkBytes = count = 0;
      previous = offset;
      return seal;
    });
  }

  #sealTail(chunk: TailChunk): TailChunk {
    chunk.sealed = true;
    const next = newTailChunk(chunk.number + 1);
    this.#tail.push(next);
    return next;
  }

  async flush(): Promise<void> {
    this.#assertUsable();
    await (this.#queuedFlush ??= this.#enqueue(async () => {
      this.#queuedFlush = undefined; // from here on, new appends need another flush
      await this.#writePending();
    }));
  }

  hasSealedAfter(after: LogOffset | 'before-all'): boolean {
    const from = after === 'before-all' ? undefined : after;
    return firstChunkAfter(this.#sealed, from) < this.#sealed.length;
  }

  async read(after: LogOffset | 'before-all'): Promise<ReadResult> {
    this.#assertUsable();
    const from = after === 'before-all' ? undefined : after;
    const descriptor = this.#sealed[firstChunkAfter(this.#sealed, from)];
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

  async truncateAfter(offset: LogOffset | 'before-all'): Promise<void> {
    this.#assertUsable();
    this.#truncations++;
    try {
      await this.#enqueue(async () => {
        await this.#writePending();
        await this.#cut(offset === 'before-all' ? undefined : offset);
      });
    } catch (error) {
      this.#failure ??= error; // a cut whose outcome is unknown leaves memory and Redis apart
      throw error;
    } finally {
      this.#truncations--;
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#enqueue(async () => {
      try {
        if (this.#failure === undefined) await this.#writePending();
      } finally {
        this.#cache.forgetLog(this.location);
      }
    });
    return this.#closing;
  }

  async destroy(): Promise<void> {
    this.#closing ??= Promise.resolve();
    await this.#enqueue(async () => {
      this.#cache.forgetLog(this.location);
      const chunks = [...this.#sealed, ...this.#tail].map((chunk) =>
        this.#keys.chunk(chunk.number),
      );
      const keys = this.#keys;
      await this.#connection.run((redis) => redis.del(keys.log, keys.sealed, ...chunks));
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

  /** One script call writes every pending entry and seal; only then do they become visible. */
  async #writePending(): Promise<void> {
    if (this.#failure !== undefined) throw this.#failedError();
    const work = this.#tail
      .filter((chunk) => chunk.durableCount < chunk.offsets.length || chunk.sealed)
      .map((chunk) => ({ chunk, count: chunk.offsets.length, sealed: chunk.sealed }));
    if (work.length === 0) return;
    const keys = [this.#keys.log, this.#keys.sealed];
    const args: (string | number)[] = [work.length];
    for (const { chunk, count, sealed } of work) {
      keys.push(this.#keys.chunk(chunk.number));
      const sent = chunk.stored.slice(chunk.durableCount, count);
      const descriptor = sealed ? formatDescriptor(describe(chunk)) : '';
      args.push(chunk.number, chunk.durableCount, sent.length, descriptor, ...sent);
    }
    try {
      await this.#connection.run((redis) =>
        (redis as RedisWithFlush).sluiceFlush(keys.length, ...keys, ...args),
      );
    } catch (error) {
      // Redis said the log is not what this object holds: nothing written can be trusted.
      if (!(error instanceof RedisUnavailableError)) this.#failure = error;
      throw error;
    }
    const newlySealed = work.filter((item) => item.sealed).map(({ chunk }) => describe(chunk));
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
  }

  #loadSealed(descriptor: ChunkDescriptor): Promise<ParsedChunk> {
    const cached = this.#cache.get(this.location, descriptor.number);
    if (cached) return cached;
    const key = this.#keys.chunk(descriptor.number);
    const loading = this.#connection
      .run((redis) => redis.lrange(key, 0, -1))
      .then((stored) => {
        const chunk: ParsedChunk = { offsets: [], jsons: [] };
        for (const text of stored) {
          const entry = parseStoredEntry(text);
          if (!entry) break;
          chunk.offsets.push(entry.offset);
          chunk.jsons.push(entry.json);
        }
        if (chunk.offsets.length !== descriptor.count || stored.length !== descriptor.count) {
          throw new ShapeLogCorruptError(this.location, `chunk ${descriptor.number} changed`);
        }
        return chunk;
      });
    this.#cache.set(this.location, descriptor.number, loading, descriptor.bytes);
    loading.catch(() => this.#cache.forget(this.location, descriptor.number, loading));
    return loading;
  }

  /**
   * Runs after #writePending, so the tail is just the open chunk and all of it is in Redis. One
   * MULTI makes the cut, so it happens whole or not at all; run twice, it does the same.
   */
  async #cut(after: LogOffset | undefined): Promise<void> {
    const openChunk = this.#tail.at(-1)!;
    const index = firstChunkAfter(this.#sealed, after);
    const cut = this.#sealed[index];
    const keys = this.#keys;
    if (!cut) {
      const kept = after ? firstIndexAfter(openChunk.offsets, openChunk.offsets.length, after) : 0;
      if (kept === openChunk.offsets.length) return;
      const key = keys.chunk(openChunk.number);
      await this.#connection.run((redis) => execAll(keepFirst(redis.multi(), key, kept)));
      for (const list of [openChunk.offsets, openChunk.jsons, openChunk.stored]) list.length = kept;
      openChunk.durableCount = kept;
      openChunk.entryBytes = openChunk.offsets.reduce(
        (sum, offset, i) => sum + entryLineBytes(offset, openChunk.jsons[i]!),
        0,
      );
    } else {
      const chunk = await this.#loadSealed(cut);
      const kept = after ? firstIndexAfter(chunk.offsets, chunk.offsets.length, after) : 0;
      const remaining = this.#sealed.slice(0, index);
      const doomed = [...this.#sealed.slice(index + 1), openChunk].map((c) => keys.chunk(c.number));
      const nextOpen = openChunk.number + 1;
      let shortened: ChunkDescriptor | undefined;
      if (kept > 0) {
        const offsets = chunk.offsets.slice(0, kept);
        const bytes = offsets.reduce((sum, o, i) => sum + entryLineBytes(o, chunk.jsons[i]!), 0);
        shortened = {
          number: cut.number,
          first: offsets[0]!,
          last: offsets.at(-1)!,
          count: kept,
          bytes: bytes + SEAL_BYTES,
        };
      }
      await this.#connection.run((redis) => {
        const multi = keepFirst(redis.multi(), keys.sealed, index);
        if (shortened) {
          keepFirst(multi, keys.chunk(cut.number), kept);
          multi.rpush(keys.sealed, formatDescriptor(shortened));
        } else {
          doomed.push(keys.chunk(cut.number));
        }
        return execAll(multi.del(...doomed).hset(keys.log, 'open', nextOpen));
      });
      if (shortened) remaining.push(shortened);
      this.#sealed = remaining;
      this.#tail = [newTailChunk(nextOpen)];
      this.#cache.forgetLog(this.location);
    }
    const tailLast = this.#tail.at(-1)!.offsets.at(-1);
    this.#lastOffset = this.#durableOffset = tailLast ?? this.#sealed.at(-1)?.last;
  }
}
