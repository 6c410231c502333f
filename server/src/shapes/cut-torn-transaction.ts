import type { ShapeLog } from '../storage/shape-storage.js';

/**
 * Makes a reopened log end at a transaction boundary. A transaction larger than a chunk spans
 * several chunk files, each made durable before the next is written, so a crash between two of
 * them leaves the log ending inside the transaction. Replication would never fill the gap: the
 * slot replays the transaction (it was not acknowledged, docs/architecture.md invariant 1), but
 * the shape drops every replay at or below the last commit LSN its log holds. So the partial
 * transaction is cut, and the replay writes it again whole. A replicated change ends its
 * transaction exactly when it carries `headers.last` (docs/protocol.md §4.1); snapshot entries
 * (tx 0) are never cut here, since a shape whose snapshot did not finish is discarded whole.
 * Returns whether anything was cut.
 */
export async function cutTornTransaction(log: ShapeLog): Promise<boolean> {
  const last = await log.lastEntry();
  if (!last || last.offset.tx === 0n || endsTransaction(last.json)) return false;
  // Every entry of the last transaction shares its tx: keep what sorts before the first of them.
  await log.truncateAfter({ tx: last.offset.tx - 1n, op: Infinity });
  return true;
}

function endsTransaction(json: string): boolean {
  // Every transaction's last entry for a shape carries it, a subquery shape's move events and
  // move-in snapshot-end included (Shape.appendWithResults).
  const message = JSON.parse(json) as { headers?: { last?: unknown } };
  return message.headers?.last === true;
}
