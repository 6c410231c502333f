import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { compareLogOffsets, formatLogOffset, parseLogOffset } from '@sluice/protocol';
import type { LogOffset } from '@sluice/protocol';
import { writeFileAtomically } from './chunk-file.js';

/** A sealed, durable chunk: enough to route a request to it without opening the file. */
export interface ChunkDescriptor {
  readonly number: number;
  readonly first: LogOffset;
  readonly last: LogOffset;
  readonly count: number;
  /** The file's size, seal line included. */
  readonly bytes: number;
}

/** First chunk whose last offset is after `after`: where a read or a cut starts. */
export function firstChunkAfter(
  chunks: readonly ChunkDescriptor[],
  after: LogOffset | undefined,
): number {
  if (after === undefined) return 0;
  let low = 0;
  let high = chunks.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareLogOffsets(chunks[middle]!.last, after) <= 0) low = middle + 1;
    else high = middle;
  }
  return low;
}

export const INDEX_FILE = 'chunks.json';

interface StoredDescriptor {
  number: number;
  first: string;
  last: string;
  count: number;
  bytes: number;
}

/** A shape log on disk is not what its index says (a sealed chunk missing or changed). */
export class ShapeLogCorruptError extends Error {
  override readonly name = 'ShapeLogCorruptError';
  readonly code = 'SLUICE_STORAGE_CORRUPT';

  constructor(dir: string, problem: string) {
    super(`shape log in ${dir} is corrupt: ${problem}`);
  }
}

/**
 * Writes the descriptors of all sealed chunks. Only ever called after those chunks' files were
 * fdatasync'ed, so the index never names data that is not on disk.
 */
export async function writeIndex(dir: string, chunks: readonly ChunkDescriptor[]): Promise<void> {
  const stored: StoredDescriptor[] = chunks.map((chunk) => ({
    number: chunk.number,
    first: formatLogOffset(chunk.first),
    last: formatLogOffset(chunk.last),
    count: chunk.count,
    bytes: chunk.bytes,
  }));
  await writeFileAtomically(
    path.join(dir, INDEX_FILE),
    JSON.stringify({ version: 1, chunks: stored }),
  );
}

/**
 * Reads the index; undefined when it is missing (a crash during create, deleted by hand) or
 * does not make sense (it is written atomically, so only outside damage does that). Either way
 * the caller rebuilds it from the chunk files, which describe themselves.
 */
export async function readIndex(dir: string): Promise<ChunkDescriptor[] | undefined> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path.join(dir, INDEX_FILE), 'utf8'));
  } catch (error) {
    if (error instanceof SyntaxError || (error as NodeJS.ErrnoException).code === 'ENOENT') {
      return undefined;
    }
    throw error;
  }
  const list = (parsed as { chunks?: unknown } | null)?.chunks;
  if (!Array.isArray(list)) return undefined;
  const chunks: ChunkDescriptor[] = [];
  for (const item of list as Partial<StoredDescriptor>[]) {
    const first = typeof item.first === 'string' ? parseLogOffset(item.first) : undefined;
    const last = typeof item.last === 'string' ? parseLogOffset(item.last) : undefined;
    const { number, count, bytes } = item;
    if (
      !first ||
      !last ||
      !Number.isSafeInteger(number) ||
      !Number.isSafeInteger(count) ||
      !Number.isSafeInteger(bytes) ||
      compareLogOffsets(first, last) > 0
    ) {
      return undefined;
    }
    const previous = chunks.at(-1);
    if (previous && (number! <= previous.number || compareLogOffsets(first, previous.last) <= 0)) {
      return undefined;
    }
    chunks.push({ number: number!, first, last, count: count!, bytes: bytes! });
  }
  return chunks;
}
