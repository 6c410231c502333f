/**
 * Which transactions a Postgres MVCC snapshot sees (`pg_current_snapshot()`: xmin, xmax, the
 * in-progress list), with the WAL insert position (on a standby: the replayed position) read right
 * after it. A shape's initial rows are read under one; a replicated transaction they already
 * contain must not be appended again (docs/protocol.md §6).
 */
export interface TransactionVisibility {
  xmin: string;
  xmax: string;
  xip: string[];
  /** Every transaction committing after this LSN is certainly not visible. */
  lsnBound: string;
}

/** 32-bit xid arithmetic: replication reports xids modulo 2^32, snapshots report 64-bit xid8. */
const low32 = (xid8: string) => Number(BigInt(xid8) & 0xffffffffn);
const precedes = (a: number, b: number) => ((a - b) | 0) < 0;

/**
 * True when the transaction's effects are visible. Past `lsnBound` nothing is, so the xid
 * comparison (which wraps every 2^32 transactions) is only ever made near the bound.
 */
export function isVisibleTo(
  visibility: TransactionVisibility,
  xid: number,
  commitLsn: bigint,
): boolean {
  if (commitLsn > BigInt(visibility.lsnBound)) return false;
  const xmin = low32(visibility.xmin);
  const xmax = low32(visibility.xmax);
  if (precedes(xid, xmin)) return true;
  if (!precedes(xid, xmax)) return false;
  return !visibility.xip.some((x) => low32(x) === xid);
}
