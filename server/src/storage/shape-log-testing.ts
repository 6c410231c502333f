// Helpers shared by the shape log tests; not used by the server.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { LogOffset } from '@sluice/protocol';
import type { LogEntry, ReadResult, ShapeLog } from './shape-log.js';

export function makeRoot(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'sluice-shape-log-'));
}

export function at(tx: bigint | number, op: number): LogOffset {
  return { tx: BigInt(tx), op };
}

export function entry(tx: bigint | number, op: number, value = 'x'): LogEntry {
  const key = `${tx}/${op}`;
  return { offset: at(tx, op), json: JSON.stringify({ key, value: { id: key, v: value } }) };
}

/** One transaction's entries, ops counting up in steps of 2 as replication numbers them. */
export function txGroup(tx: bigint | number, count: number, value?: string): LogEntry[] {
  return Array.from({ length: count }, (_, i) => entry(tx, i * 2, value));
}

/** Reads the whole durable log as a client does, feeding back each response's last offset. */
export async function walk(log: ShapeLog): Promise<ReadResult[]> {
  const responses: ReadResult[] = [];
  let cursor: LogOffset | 'before-all' = 'before-all';
  for (;;) {
    const result = await log.read(cursor);
    if (result.entries.length === 0) {
      assert.equal(result.reachedEnd, true);
      assert.equal(result.lastOffset, undefined);
      return responses;
    }
    responses.push(result);
    cursor = result.lastOffset!;
  }
}

export async function walkEntries(log: ShapeLog): Promise<string[]> {
  return (await walk(log)).flatMap((result) => result.entries);
}

export interface ChunkFileContent {
  name: string;
  sealed: boolean;
  /** Entry lines without their newline. */
  lines: string[];
  offsets: string[];
  jsons: string[];
  entryBytes: number;
}

/** The chunk files as they are on disk, parsed independently of the code under test. */
export async function chunkFiles(dir: string): Promise<ChunkFileContent[]> {
  const names = (await readdir(dir)).filter((name) => /^chunk-\d+\.log$/.test(name)).sort();
  return Promise.all(
    names.map(async (name) => {
      const all = (await readFile(path.join(dir, name), 'utf8')).split('\n').slice(0, -1);
      const sealed = all.at(-1) === '#sealed';
      const lines = sealed ? all.slice(0, -1) : all;
      return {
        name,
        sealed,
        lines,
        offsets: lines.map((line) => line.slice(0, line.indexOf(' '))),
        jsons: lines.map((line) => line.slice(line.indexOf(' ') + 1)),
        entryBytes: lines.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0),
      };
    }),
  );
}

export function parseOffset(text: string): LogOffset {
  const [tx, op] = text.split('_');
  return at(BigInt(tx!), op === 'inf' ? Infinity : Number(op));
}
