import { rm } from 'node:fs/promises';
import path from 'node:path';
import { SEAL_BYTES, chunkFileName, cutFile, syncDirectory } from './chunk-file.js';
import type { ParsedChunk } from './chunk-file.js';
import { writeIndex } from './chunk-index.js';
import type { ChunkDescriptor } from './chunk-index.js';

/**
 * Cuts a log inside its sealed chunks: keeps `sealed[0, at)` plus the first `kept` entries of
 * `sealed[at]` (`cutChunk` holds its entries), which stays sealed; deletes every later chunk
 * file, `laterFiles` included (the open chunk). Returns the new index.
 *
 * Order matters for a crash part way: the cut chunks leave the index first, then files go
 * newest first, so the directory always holds a prefix of the log that recovery accepts.
 */
export async function cutSealedChunks(
  dir: string,
  sealed: readonly ChunkDescriptor[],
  at: number,
  cutChunk: ParsedChunk,
  kept: number,
  laterFiles: readonly number[],
): Promise<ChunkDescriptor[]> {
  const cut = sealed[at];
  if (!cut) throw new RangeError(`no sealed chunk ${at}`);
  const remaining = sealed.slice(0, at);
  await writeIndex(dir, remaining);
  const doomed = [...laterFiles, ...sealed.slice(at + 1).map((chunk) => chunk.number)];
  for (const number of doomed.sort((a, b) => b - a)) {
    await rm(path.join(dir, chunkFileName(number)), { force: true });
  }
  const file = path.join(dir, chunkFileName(cut.number));
  if (kept === 0) {
    await rm(file);
  } else {
    const bytes = cutChunk.lines.bytesOf(kept);
    await cutFile(file, bytes, true);
    const [first, last] = [cutChunk.offsets[0]!, cutChunk.offsets[kept - 1]!];
    remaining.push({ number: cut.number, first, last, count: kept, bytes: bytes + SEAL_BYTES });
    await writeIndex(dir, remaining);
  }
  await syncDirectory(dir);
  return remaining;
}
