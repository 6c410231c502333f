import type { FileHandle } from 'node:fs/promises';
import type { LogOffset } from '@sluice/protocol';

/** A chunk not yet sealed durably: the open one, plus any sealed since the last flush. */
export interface TailChunk {
  readonly number: number;
  readonly offsets: LogOffset[];
  readonly jsons: string[];
  /** Bytes of the entry lines, the seal line excluded: what `chunkBytes` is compared with. */
  entryBytes: number;
  /** Sealed in memory at the end of an append(); durable once a flush writes the seal line. */
  sealed: boolean;
  /** Entries fdatasync'ed; only these are visible to read(). */
  durableCount: number;
  /** Lines appended but not yet written (the seal line included), one string per line. */
  pending: string[];
  /** The file exists and its directory entry was synced. */
  onDisk: boolean;
  handle: FileHandle | undefined;
}

export function newTailChunk(number: number): TailChunk {
  return {
    number,
    offsets: [],
    jsons: [],
    entryBytes: 0,
    sealed: false,
    durableCount: 0,
    pending: [],
    onDisk: false,
    handle: undefined,
  };
}
