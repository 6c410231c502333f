import { readFile, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { LogOffset } from '@sluice/protocol';
import {
  SEAL_BYTES,
  chunkFileName,
  cutFile,
  parseChunkFileName,
  scanChunk,
  syncDirectory,
} from './chunk-file.js';
import type { ScannedChunk } from './chunk-file.js';
import type { ChunkLines } from './chunk-lines.js';
import { INDEX_FILE, ShapeLogCorruptError, readIndex, writeIndex } from './chunk-index.js';
import type { ChunkDescriptor } from './chunk-index.js';

export interface RecoveredLog {
  sealed: ChunkDescriptor[];
  /** The unsealed last chunk, when one with entries survived. */
  active: { number: number; offsets: LogOffset[]; lines: ChunkLines } | undefined;
  nextNumber: number;
}

/**
 * Brings a shape log's directory back to a consistent state after a restart or crash, reading
 * only the index and the chunk files it does not cover (normally just the active one).
 *
 * Write order makes this sound: a chunk file is fdatasync'ed (seal line included) before the
 * next chunk file gets any bytes, and before the index names it. So indexed chunks are complete,
 * and unindexed files are, in number order, complete sealed chunks followed by at most one
 * partially written one. Whatever is torn or invalid is cut, together with every later file,
 * so the surviving log is always a prefix of what was appended.
 */
export async function recoverLog(dir: string): Promise<RecoveredLog> {
  const names = await readdir(dir);
  // A leftover of an index rewrite that never reached its rename.
  await rm(path.join(dir, `${INDEX_FILE}.tmp`), { force: true });
  const numbers = names
    .map(parseChunkFileName)
    .filter((number) => number !== undefined)
    .sort((a, b) => a - b);
  const index = await readIndex(dir);
  const sealed = [...(index ?? [])];
  const present = new Set(numbers);
  for (const chunk of sealed) {
    if (!present.has(chunk.number)) {
      throw new ShapeLogCorruptError(dir, `sealed chunk ${chunkFileName(chunk.number)} is missing`);
    }
  }

  const lastIndexed = sealed.at(-1)?.number ?? 0;
  const survivors: { number: number; scan: ScannedChunk }[] = [];
  let previousLast = sealed.at(-1)?.last;
  let damaged = false;
  let removedFiles = false;
  for (const number of numbers.filter((n) => n > lastIndexed)) {
    const file = path.join(dir, chunkFileName(number));
    // An empty last file is the open chunk, created with its predecessor's seal (ShapeLog
    // flush): kept, so the first entry written to it needs no directory sync. A shape that
    // never had a change since has one, so it is recognised by its size, without reading it.
    if (!damaged && number === numbers.at(-1) && (await stat(file)).size === 0) {
      survivors.push({ number, scan: scanChunk(Buffer.alloc(0), previousLast) });
      continue;
    }
    const bytes = damaged ? undefined : await readFile(file);
    const scan = bytes && scanChunk(bytes, previousLast);
    if (!bytes || !scan || scan.offsets.length === 0) {
      await rm(file, { force: true });
      removedFiles = true;
      damaged = true;
      continue;
    }
    if (scan.validBytes < bytes.length) {
      await cutFile(file, scan.validBytes, false);
      damaged = true;
    }
    survivors.push({ number, scan });
    previousLast = scan.offsets.at(-1);
  }

  // Every surviving chunk but the last was followed by a later chunk, so it was complete; one
  // without its seal line can only come from outside tampering: seal it rather than lose order.
  for (const [position, { number, scan }] of survivors.entries()) {
    const isLast = position === survivors.length - 1;
    if (isLast && !scan.sealed) continue;
    if (!scan.sealed) {
      await cutFile(path.join(dir, chunkFileName(number)), scan.validBytes, true);
    }
    sealed.push({
      number,
      first: scan.offsets[0]!,
      last: scan.offsets.at(-1)!,
      count: scan.offsets.length,
      bytes: scan.lines.bytesOf() + SEAL_BYTES,
    });
  }
  if (removedFiles) await syncDirectory(dir);
  if (index === undefined || sealed.length > index.length) await writeIndex(dir, sealed);

  const last = survivors.at(-1);
  const active =
    last && !last.scan.sealed
      ? { number: last.number, offsets: last.scan.offsets, lines: last.scan.lines }
      : undefined;
  return { sealed, active, nextNumber: (numbers.at(-1) ?? 0) + 1 };
}
