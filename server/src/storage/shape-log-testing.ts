// Helpers shared by the shape log tests of every backend; not used by the server.
import assert from 'node:assert/strict';
import type { LogOffset } from '@sluice/protocol';
import type { LogEntry, ReadResult, ShapeLog } from './shape-storage.js';

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

export function parseOffset(text: string): LogOffset {
  const [tx, op] = text.split('_');
  return at(BigInt(tx!), op === 'inf' ? Infinity : Number(op));
}
