import { open, rename } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { compareLogOffsets, parseLogOffset } from '@sluice/protocol';
import type { LogOffset } from '@sluice/protocol';
import { ChunkLines } from './chunk-lines.js';

/**
 * On-disk format of one chunk: `chunk-000001.log`, one entry per line, `<offset> <json>\n`.
 * A sealed chunk ends with the line `#sealed\n`, written in the same write as its last entries,
 * so a chunk file says by itself whether it is complete: the index is only an accelerator and
 * recovery can always trust the files.
 */
export const SEAL_LINE = '#sealed\n';
export const SEAL_BYTES = Buffer.byteLength(SEAL_LINE);

const CHUNK_FILE_PATTERN = /^chunk-(\d+)\.log$/;

export function chunkFileName(chunkNumber: number): string {
  return `chunk-${String(chunkNumber).padStart(6, '0')}.log`;
}

/** The chunk number of a file name, or undefined when the file is not a chunk. */
export function parseChunkFileName(name: string): number | undefined {
  const match = CHUNK_FILE_PATTERN.exec(name);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

/**
 * The bytes of the line `<offsetText> <json>\n`, counted without building it: the offset's text
 * is ASCII, and measuring the line would flatten a copy of every entry only to count it.
 */
export function lineBytes(offsetText: string, json: string): number {
  return offsetText.length + 2 + Buffer.byteLength(json);
}

/** Offsets that would not survive a format/parse round trip are refused at append time. */
export function isValidOffset(offset: LogOffset): boolean {
  return (
    typeof offset.tx === 'bigint' &&
    offset.tx >= 0n &&
    (offset.op === Infinity || (Number.isSafeInteger(offset.op) && offset.op >= 0))
  );
}

/**
 * A chunk's entries: their offsets, and their lines as bytes. Not an object per entry: one chunk
 * can hold hundreds of thousands.
 */
export interface ParsedChunk {
  offsets: LogOffset[];
  lines: ChunkLines;
}

export interface ScannedChunk extends ParsedChunk {
  /** Bytes from the start of the file that hold complete, valid lines (torn tail excluded). */
  validBytes: number;
  sealed: boolean;
  /** True when something other than a torn last line was invalid (bad line, order, zeros). */
  corrupt: boolean;
}

/**
 * Parses a chunk file's bytes. Stops at the first line that is torn (no newline), malformed,
 * out of order (see `followsInChunk`; the first line must be strictly after `after`), or follows
 * the seal line, and reports how many bytes were valid so recovery can truncate there.
 */
export function scanChunk(bytes: Buffer, after: LogOffset | undefined): ScannedChunk {
  // 0x0a never occurs inside a multi-byte UTF-8 sequence, so this also cuts torn characters.
  const completeBytes = bytes.lastIndexOf(0x0a) + 1;
  const offsets: LogOffset[] = [];
  const starts: number[] = [];
  let previous = after;
  let sealed = false;
  let position = 0;
  while (position < completeBytes) {
    if (sealed) break; // nothing may follow the seal line
    const newline = bytes.indexOf(0x0a, position);
    if (
      newline + 1 - position === SEAL_BYTES &&
      bytes.toString('latin1', position, newline + 1) === SEAL_LINE
    ) {
      sealed = true;
      position = newline + 1;
      continue;
    }
    const space = bytes.indexOf(0x20, position);
    if (space <= position || space >= newline) break;
    const offset = parseLogOffset(bytes.toString('latin1', position, space));
    if (!offset || (previous && !followsInChunk(offset, previous, offsets.length > 0))) break;
    if (newline === space + 1) break; // empty JSON text
    offsets.push(offset);
    starts.push(position, space + 1);
    previous = offset;
    position = newline + 1;
  }
  const corrupt = position < completeBytes;
  const validBytes = corrupt ? position : completeBytes;
  // The entry lines end where the seal line, if any, begins.
  const lines = ChunkLines.over(bytes, validBytes - (sealed ? SEAL_BYTES : 0), starts);
  return { offsets, lines, validBytes, sealed, corrupt };
}

/**
 * Whether `offset` may follow `previous` in a log: strictly after it, or equal to it when both
 * are entries of one snapshot chunk (tx 0, `sameChunk`), the rule `ShapeLog.append` keeps.
 */
export function followsInChunk(
  offset: LogOffset,
  previous: LogOffset,
  sameChunk: boolean,
): boolean {
  const order = compareLogOffsets(offset, previous);
  return order > 0 || (order === 0 && offset.tx === 0n && sameChunk);
}

/** First index in `offsets[0, end)` whose offset is strictly after `after`. */
export function firstIndexAfter(
  offsets: readonly LogOffset[],
  end: number,
  after: LogOffset,
): number {
  let low = 0;
  let high = end;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareLogOffsets(offsets[middle]!, after) <= 0) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Cuts a chunk file to `length` bytes, appending the seal line when asked, durably. */
export async function cutFile(file: string, length: number, seal: boolean): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.truncate(length);
    if (seal) await writeAll(handle, Buffer.from(SEAL_LINE), length);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** FileHandle.write may write less than asked; loop so a buffer is never half written. */
export async function writeAll(
  handle: FileHandle,
  buffer: Buffer,
  position?: number,
): Promise<void> {
  let written = 0;
  while (written < buffer.length) {
    const at = position === undefined ? null : position + written;
    const { bytesWritten } = await handle.write(buffer, written, buffer.length - written, at);
    written += bytesWritten;
  }
}

/**
 * Appends `buffers` in one `writev` (no copy to join them), finishing with plain writes when
 * the system wrote less.
 */
export async function writeAllOf(handle: FileHandle, buffers: Buffer[]): Promise<void> {
  let { bytesWritten } = await handle.writev(buffers);
  for (const buffer of buffers) {
    if (bytesWritten < buffer.length) await writeAll(handle, buffer.subarray(bytesWritten));
    bytesWritten = Math.max(0, bytesWritten - buffer.length);
  }
}

/** Makes created, renamed or deleted directory entries durable (POSIX needs a directory fsync). */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces `file` with `content` so a crash leaves either the old or the new text, never a mix. */
export async function writeFileAtomically(file: string, content: string): Promise<void> {
  const temporary = `${file}.tmp`;
  const handle = await open(temporary, 'w');
  try {
    await writeAll(handle, Buffer.from(content));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
  await syncDirectory(path.dirname(file));
}
