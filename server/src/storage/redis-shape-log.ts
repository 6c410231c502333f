import { compareLogOffsets, formatLogOffset, parseLogOffset } from '@sluice/protocol';
import type { LogOffset } from '@sluice/protocol';
import type { ChainableCommander } from 'ioredis';
import { SEAL_BYTES, entryLineBytes, followsInChunk, linesBytes } from './chunk-file.js';
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
  keys: ShapeKeys;
  chunkBytes: number;
  chunkCache: ChunkCache;
}

export interface RedisTailChunk extends TailChunk {
  /** The entries as stored: `<offset> <json>`. */
  readonly stored: string[];
}

function newRedisChunk(number: number): RedisTailChunk {
  return { ...newTailChunk(number), stored: [] };
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

function parseStoredEntry(text: string): { offset: LogOffset; json: string } | undefined {
  const space = text.indexOf(' ');
  const offset = space > 0 ? parseLogOffset(text.slice(0, space)) : undefined;
  return offset && space < text.length - 1 ? { offset, json: text.slice(space + 1) } : undefined;
}

function formatDescriptor(chunk: ChunkDescriptor): string {
  const { number, count, bytes } = chunk;
  const [first, last] = [formatLogOffset(chunk.first), formatLogOffset(chunk.last)];
  return JSON.stringify({ number, first, last, count, bytes } satisfies StoredDescriptor);
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

  private constructor(
    options: RedisShapeLogOptions,
    sealed: ChunkDescriptor[],
    open: RedisTailChunk,
  ) {
    const { chunkBytes, chunkCache } = options;
    super(options.keys.tag, { chunkBytes, chunkCache }, sealed, open, open.number + 1);
    this.#connection = options.connection;
    this.#keys = options.keys;
  }

  /** An empty log, its hash already created by the storage. */
  static created(options: RedisShapeLogOptions): RedisShapeLog {
    return new RedisShapeLog(options, [], newRedisChunk(1));
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
    const open = newRedisChunk(stored.open);
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

  protected newChunk(number: number): RedisTailChunk {
    return newRedisChunk(number);
  }

  /** Stored without the line's newline: each entry is a list item of its own. */
  protected stageLine(chunk: RedisTailChunk, line: string): void {
    chunk.stored.push(line.slice(0, -1));
  }

  /** Nothing to stage: the flush sends a sealed chunk's descriptor with its last entries. */
  protected stageSeal(): void {}

  /** One script call writes every pending entry and seal. */
  protected async persist(pending: readonly PendingChunk<RedisTailChunk>[]): Promise<void> {
    const keys = [this.#keys.log, this.#keys.sealed];
    const args: (string | number)[] = [pending.length];
    for (const { chunk, count, sealed } of pending) {
      keys.push(this.#keys.chunk(chunk.number));
      const sent = chunk.stored.slice(chunk.durableCount, count);
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
  }

  /** One MULTI makes each cut, so it happens whole or not at all; run twice, it does the same. */
  protected async cutOpenChunk(chunk: RedisTailChunk, kept: number): Promise<void> {
    const key = this.#keys.chunk(chunk.number);
    await this.#connection.run((redis) => execAll(keepFirst(redis.multi(), key, kept)));
    chunk.stored.length = kept;
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
      const bytes = linesBytes(chunk, kept) + SEAL_BYTES;
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
