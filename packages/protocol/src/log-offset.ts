/**
 * A position in a shape's log (docs/protocol.md §3): `<tx>_<op>`. Snapshot entries use tx 0 and
 * the number of their chunk as op (every entry of snapshot chunk c is at `0_c`); changes from
 * replication use the commit LSN as tx (beyond 2^53, hence bigint). `op` is `Infinity` for
 * `<tx>_inf`, the position after every entry of that tx.
 */
export interface LogOffset {
  readonly tx: bigint;
  readonly op: number;
}

/** What a request's `offset` may be: a position, the start (`-1`) or the current end (`now`). */
export type RequestOffset = LogOffset | 'before-all' | 'now';

/** `0_inf`: after every snapshot chunk, before every change; a new shape's end. */
export const SNAPSHOT_END: LogOffset = Object.freeze({ tx: 0n, op: Infinity });

const OFFSET_PATTERN = /^(\d+)_(\d+|inf)$/;

/** Parses `x_y` / `x_inf`; undefined when malformed. */
export function parseLogOffset(text: string): LogOffset | undefined {
  const match = OFFSET_PATTERN.exec(text);
  if (!match?.[1] || !match[2]) return undefined;
  const op = match[2] === 'inf' ? Infinity : Number(match[2]);
  if (!Number.isSafeInteger(op) && op !== Infinity) return undefined;
  return { tx: BigInt(match[1]), op };
}

export function parseRequestOffset(text: string): RequestOffset | undefined {
  if (text === '-1') return 'before-all';
  if (text === 'now') return 'now';
  return parseLogOffset(text);
}

export function formatLogOffset(offset: LogOffset): string {
  return `${formatTx(offset.tx)}_${offset.op === Infinity ? 'inf' : offset.op}`;
}

let lastTx = -1n;
let lastTxText = '';

/**
 * A tx (commit LSN) as decimal text. Offsets come in runs of one tx (a transaction's changes,
 * shape after shape, or a snapshot's rows), so the last one converted is nearly always the one
 * asked for: one BigInt conversion per run, not one per entry.
 */
export function formatTx(tx: bigint): string {
  if (tx !== lastTx) {
    lastTxText = tx.toString();
    lastTx = tx;
  }
  return lastTxText;
}

/** Negative, zero or positive like a comparator: tx first, then op. */
export function compareLogOffsets(a: LogOffset, b: LogOffset): number {
  if (a.tx !== b.tx) return a.tx < b.tx ? -1 : 1;
  return a.op === b.op ? 0 : a.op < b.op ? -1 : 1;
}

/** Postgres prints LSNs as `X/Y` (hex halves); the wire uses the decimal 64-bit value. */
export function lsnToBigInt(lsn: string): bigint {
  const [high, low] = lsn.split('/');
  if (high === undefined || low === undefined || !/^[0-9A-Fa-f]+$/.test(high + low)) {
    throw new Error(`not an LSN: "${lsn}"`);
  }
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`);
}

export function bigIntToLsn(value: bigint): string {
  return `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`;
}
