import type { LogOffset } from '@sluice/protocol';
import { SEAL_BYTES } from './chunk-file.js';
import { ChunkLines } from './chunk-lines.js';
import type { ChunkDescriptor } from './chunk-index.js';

/**
 * A chunk not yet sealed durably: the open one, plus any sealed since the last flush. Each
 * backend extends it with what it needs to persist the chunk.
 */
export interface TailChunk {
  readonly number: number;
  readonly offsets: LogOffset[];
  /**
   * The entries' lines, as stored and served. Their bytes (`bytesOf()`, the seal line excluded)
   * are what `chunkBytes` is compared with, the same for every backend so that all seal alike.
   */
  readonly lines: ChunkLines;
  /** Sealed in memory at the end of an append(); durable once a flush persists the seal. */
  sealed: boolean;
  /** Entries made durable; only these are visible to read(). */
  durableCount: number;
}

export function newTailChunk(number: number): TailChunk {
  return {
    number,
    offsets: [],
    lines: ChunkLines.empty(),
    sealed: false,
    durableCount: 0,
  };
}

/** The index entry of a sealed tail chunk. */
export function describeChunk(chunk: TailChunk): ChunkDescriptor {
  return {
    number: chunk.number,
    first: chunk.offsets[0]!,
    last: chunk.offsets.at(-1)!,
    count: chunk.offsets.length,
    bytes: chunk.lines.bytesOf() + SEAL_BYTES,
  };
}
