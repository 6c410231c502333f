/**
 * The snapshot a shape's initial rows were read in (`pg_current_snapshot()`), and the WAL insert
 * position (on a standby: the replayed position) read right after it. A replicated transaction whose effects the snapshot already
 * contains must not be appended again (PROTOCOL.md §6).
 */
export interface SnapshotVisibility {
  xmin: string;
  xmax: string;
  xip: string[];
  /** Every transaction committing after this LSN is certainly not in the snapshot. */
  lsnBound: string;
}

/** 32-bit xid arithmetic: replication reports xids modulo 2^32, snapshots report 64-bit xid8. */
const low32 = (xid8: string) => Number(BigInt(xid8) & 0xffffffffn);
const precedes = (a: number, b: number) => ((a - b) | 0) < 0;

/**
 * True when the transaction's effects are in the snapshot. Past `lsnBound` nothing is, so the
 * xid comparison (which wraps every 2^32 transactions) is only ever made near the snapshot.
 */
export function visibleInSnapshot(
  snapshot: SnapshotVisibility,
  xid: number,
  commitLsn: bigint,
): boolean {
  if (commitLsn > BigInt(snapshot.lsnBound)) return false;
  const xmin = low32(snapshot.xmin);
  const xmax = low32(snapshot.xmax);
  if (precedes(xid, xmin)) return true;
  if (!precedes(xid, xmax)) return false;
  return !snapshot.xip.some((x) => low32(x) === xid);
}
