import { compareLogOffsets, formatLogOffset, parseLogOffset } from '@sluice/protocol';
import type { LogOffset } from '@sluice/protocol';
import type { ChainableCommander } from 'ioredis';
import { SEAL_BYTES, followsInChunk } from './chunk-file.js';
import { ChunkLines } from './chunk-lines.js';
import type { ParsedChunk } from './chunk-file.js';
import type { ChunkCache } from './chunk-cache.js';
import { ShapeLogCorruptError } from './chunk-index.js';
import type { ChunkDescriptor } from './chunk-index.js';
import { ChunkedShapeLog } from './chunked-shape-log.js';
import type { PendingChunk } from './chunked-shape-log.js';
import { RedisUnavailableError } from './redis-connection.js';
import type { RedisClient, RedisConnection } from './redis-connection.js';
import type { ShapeKeys } from './redis-keys.js';
import { describeChunk, newTailChunk } from './tail-chunk.js';
import type { TailChunk } from './tail-chunk.js';

/** The Lua flush (redis-flush-script.ts), defined on the connection by `RedisShapeStorage`. */
type FlushCommand = (numberOfKeys: number, ...keysAndArgs: (string | number)[]) => Promise<string>;
type RedisWithFlush = RedisClient & { sluiceFlush: FlushCommand };

export interface RedisShapeLogOptions {
  connection: RedisConnection;
  /** This server's writer epoch, sent with every flush (see redis-flush-script.ts). */
  epoch: () => number;
  keys: ShapeKeys;
  chunkBytes: number;
  chunkCache: ChunkCache;
}

/** Each entry is stored as its line without the newline, `<offset> <json>`: a list item. */
export type RedisTailChunk = TailChunk;

function newRedisChunk(number: number): RedisTailChunk {
  return newTailChunk(number);
}

interface StoredDescriptor {
  number: number;
  first: string;
  last: string;
  count: number;
  bytes: number;
}

/** A shape log that does not exist (never created, or removed). */
export class ShapeLogMissingError extends Error {
  override readonly name = 'ShapeLogMissingError';
  readonly code = 'SLUICE_STORAGE_MISSING';
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

function parseStoredEntry(
  text: string,
): { offset: LogOffset; offsetText: string; json: string } | undefined {
  const space = text.indexOf(' ');
  const offsetText = text.slice(0, Math.max(space, 0));
  const offset = space > 0 ? parseLogOffset(offsetText) : undefined;
  return offset && space < text.length - 1
    ? { offset, offsetText, json: text.slice(space + 1) }
    : undefined;
}

function formatDescriptor(chunk: ChunkDescriptor): string {
  const { number, count, bytes } = chunk;
  const [first, last] = [formatLogOffset(chunk.first), formatLogOffset(chunk.last)];
  return JSON.stringify({ number, first, last, count, bytes } satisfies StoredDescriptor);
}

/**
 * Sealed chunk descriptors as stored, checked to follow `previous` (the last one already held)
 * and to come before the open chunk `open`; throws `ShapeLogCorruptError` otherwise.
 */
function parseDescriptors(
  location: string,
  stored: readonly string[],
  previous: ChunkDescriptor | undefined,
  open: number,
): ChunkDescriptor[] {
  const sealed: ChunkDescriptor[] = [];
  let last = previous;
  for (const text of stored) {
    const item = JSON.parse(text) as Partial<StoredDescriptor>;
    const first = typeof item.first === 'string' ? parseLogOffset(item.first) : undefined;
    const lastOffset = typeof item.last === 'string' ? parseLogOffset(item.last) : undefined;
    const { number, count, bytes } = item;
    if (
      !first ||
      !lastOffset ||
      !Number.isSafeInteger(number) ||
      !Number.isSafeInteger(count) ||
      !Number.isSafeInteger(bytes) ||
      number! >= open ||
      (last && (number! <= last.number || compareLogOffsets(first, last.last) <= 0))
    ) {
      throw new ShapeLogCorruptError(location, `sealed chunk descriptor ${text} is invalid`);
    }
    last = { number: number!, first, last: lastOffset, count: count!, bytes: bytes! };
    sealed.push(last);
  }
  return sealed;
}

/**
 * Adds stored entries to a chunk read from Redis (all durable), each checked to follow the one
 * before (`previous`, the log's last offset before them, for the first).
 */
function addStoredEntries(
  location: string,
  chunk: RedisTailChunk,
  stored: readonly string[],
  previous: LogOffset | undefined,
): void {
  for (const text of stored) {
    const entry = parseStoredEntry(text);
    if (!entry || (previous && !followsInChunk(entry.offset, previous, chunk.offsets.length > 0))) {
      throw new ShapeLogCorruptError(
        location,
        `chunk ${chunk.number} holds an invalid entry: ${text.slice(0, 80)}`,
      );
    }
    chunk.offsets.push(entry.offset);
    chunk.lines.append(entry.offsetText, entry.json);
    previous = entry.offset;
  }
  chunk.durableCount = chunk.offsets.length;
}

/**
 * The shape log of docs/protocol.md §3 in Redis, with exactly the disk log's semantics
 * (the in-memory log is `ChunkedShapeLog`'s; this class writes, loads and cuts the lists). Each chunk is a Redis list of entries; a
 * sealed chunk's descriptor goes to the sealed list in the same script as its last entries, so
 * the index never names an incomplete chunk. Sealed chunks are read with one LRANGE and kept
 * parsed in the shared `ChunkCache`; the open chunk stays in memory for readers at the tail.
 *
 * A flush that fails for want of Redis leaves its entries pending, and the next flush sends them
 * again (the script is idempotent); a flush Redis refuses because the log is not what this
 * object holds fails the log: only reopening can go on.
 */
export class RedisShapeLog extends ChunkedShapeLog<RedisTailChunk> {
  readonly #connection: RedisConnection;
  readonly #keys: ShapeKeys;
  readonly #epoch: () => number;

  private constructor(
    options: RedisShapeLogOptions,
    sealed: ChunkDescriptor[],
    open: RedisTailChunk,
  ) {
    const { chunkBytes, chunkCache } = options;
    super(options.keys.tag, { chunkBytes, chunkCache }, sealed, open, open.number + 1);
    this.#connection = options.connection;
    this.#keys = options.keys;
    this.#epoch = options.epoch;
  }

  /** An empty log, its hash already created by the storage. */
  static created(options: RedisShapeLogOptions): RedisShapeLog {
    return new RedisShapeLog(options, [], newRedisChunk(1));
  }

  /** A log as `stored`; throws `ShapeLogCorruptError` when it does not make sense. */
  static opened(options: RedisShapeLogOptions, stored: StoredLog): RedisShapeLog {
    const sealed = parseDescriptors(options.keys.tag, stored.sealed, undefined, stored.open);
    const open = newRedisChunk(stored.open);
    addStoredEntries(options.keys.tag, open, stored.openEntries, sealed.at(-1)?.last);
    return new RedisShapeLog(options, sealed, open);
  }

  protected newChunk(number: number): RedisTailChunk {
    return newRedisChunk(number);
  }

  /** One script call writes every pending entry and seal. */
  protected async persist(pending: readonly PendingChunk<RedisTailChunk>[]): Promise<void> {
    const keys = [this.#keys.log, this.#keys.sealed];
    const args: (string | number)[] = [this.#epoch(), pending.length];
    for (const { chunk, count, sealed } of pending) {
      keys.push(this.#keys.chunk(chunk.number));
      const sent: string[] = [];
      for (let i = chunk.durableCount; i < count; i++) sent.push(chunk.lines.lineText(i));
      const descriptor = sealed ? formatDescriptor(describeChunk(chunk)) : '';
      args.push(chunk.number, chunk.durableCount, sent.length, descriptor, ...sent);
    }
    await this.#connection.run((redis) =>
      (redis as RedisWithFlush).sluiceFlush(keys.length, ...keys, ...args),
    );
  }

  /**
   * Redis out of reach left the log as it was, and the script is idempotent, so the next flush
   * sends the same entries again; any other error means Redis refused because the log is not
   * what this object holds: nothing written can be trusted.
   */
  protected override isRetryable(error: unknown): boolean {
    return error instanceof RedisUnavailableError;
  }

  protected async loadChunk(descriptor: ChunkDescriptor): Promise<ParsedChunk> {
    const key = this.#keys.chunk(descriptor.number);
    const stored = await this.#connection.run((redis) => redis.lrange(key, 0, -1));
    const chunk: ParsedChunk = { offsets: [], lines: ChunkLines.empty() };
    for (const text of stored) {
      const entry = parseStoredEntry(text);
      if (!entry) break;
      chunk.offsets.push(entry.offset);
      chunk.lines.append(entry.offsetText, entry.json);
    }
    chunk.lines.compact();
    if (chunk.offsets.length !== descriptor.count || stored.length !== descriptor.count) {
      throw new ShapeLogCorruptError(this.location, `chunk ${descriptor.number} changed`);
    }
    return chunk;
  }

  /** One MULTI makes each cut, so it happens whole or not at all; run twice, it does the same. */
  protected async cutOpenChunk(chunk: RedisTailChunk, kept: number): Promise<void> {
    const key = this.#keys.chunk(chunk.number);
    await this.#connection.run((redis) => execAll(keepFirst(redis.multi(), key, kept)));
  }

  protected async cutSealedChunks(
    at: number,
    chunk: ParsedChunk,
    kept: number,
    nextOpen: number,
  ): Promise<ChunkDescriptor[]> {
    const keys = this.#keys;
    const sealed = this.sealedChunks;
    const cut = sealed[at]!;
    const remaining = sealed.slice(0, at);
    const later = [...sealed.slice(at + 1), ...this.tailChunks];
    const doomed = later.map((c) => keys.chunk(c.number));
    let shortened: ChunkDescriptor | undefined;
    if (kept > 0) {
      const [first, last] = [chunk.offsets[0]!, chunk.offsets[kept - 1]!];
      const bytes = chunk.lines.bytesOf(kept) + SEAL_BYTES;
      shortened = { number: cut.number, first, last, count: kept, bytes };
    }
    await this.#connection.run((redis) => {
      const multi = keepFirst(redis.multi(), keys.sealed, at);
      if (shortened) {
        keepFirst(multi, keys.chunk(cut.number), kept);
        multi.rpush(keys.sealed, formatDescriptor(shortened));
      } else {
        doomed.push(keys.chunk(cut.number));
      }
      return execAll(multi.del(...doomed).hset(keys.log, 'open', nextOpen));
    });
    if (shortened) remaining.push(shortened);
    return remaining;
  }

  /**
   * One MULTI reads the open chunk's number and the descriptors sealed since; then the open
   * chunk's entries past those held (all of them when it is a new one). A chunk sealed between
   * the two reads is read whole, as if open, and the next refresh finds its descriptor.
   */
  protected async loadAppended(
    sealedCount: number,
    open: RedisTailChunk,
  ): Promise<{ sealed: ChunkDescriptor[]; open: RedisTailChunk }> {
    const keys = this.#keys;
    const [number, stored] = await this.#connection.run(async (redis) => {
      const results = await redis
        .multi()
        .hget(keys.log, 'open')
        .lrange(keys.sealed, sealedCount, -1)
        .exec();
      const failed = results?.find(([error]) => error);
      if (!results || failed) throw failed?.[0] ?? new Error('MULTI was discarded');
      return [results[0]![1], results[1]![1]] as [string | null, string[]];
    });
    if (number === null) throw new ShapeLogMissingError(`no shape log ${keys.tag}`);
    const known = this.sealedChunks.at(-1);
    const sealed = parseDescriptors(this.location, stored, known, Number(number));
    // The chunk held as open is sealed now: it must be among those just listed.
    const stillOpen = Number(number) === open.number;
    if (!stillOpen && !sealed.some((chunk) => chunk.number === open.number)) {
      throw new ShapeLogCorruptError(
        this.location,
        `chunk ${open.number} vanished (the log was cut)`,
      );
    }
    const next = stillOpen ? open : newRedisChunk(Number(number));
    const entries = await this.#connection.run((redis) =>
      redis.lrange(keys.chunk(next.number), next.offsets.length, -1),
    );
    const previous = next.offsets.at(-1) ?? sealed.at(-1)?.last ?? known?.last;
    addStoredEntries(this.location, next, entries, previous);
    return { sealed, open: next };
  }

  /** Nothing is held open: the connection is the storage's. */
  protected async release(): Promise<void> {}

  protected async erase(): Promise<void> {
    const chunks = [...this.sealedChunks, ...this.tailChunks].map((chunk) =>
      this.#keys.chunk(chunk.number),
    );
    const keys = this.#keys;
    await this.#connection.run((redis) => redis.del(keys.log, keys.sealed, ...chunks));
  }
}
