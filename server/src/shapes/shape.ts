import { SNAPSHOT_END, compareLogOffsets, formatLogOffset, type LogOffset } from '@sluice/protocol';
import type { Change, Row, Transaction } from '../pg/transaction.js';
import type { ShapeLog } from '../storage/shape-storage.js';
import { compileFilter } from '../where/filter-evaluator.js';
import type { FilterSpec } from '../where/filter-spec.js';
import { transactionEntries, type MessageContext } from './change-messages.js';
import type { ShapeDefinition } from './shape-definition.js';
import { isVisibleTo, type TransactionVisibility } from '../pg/transaction-visibility.js';

export type RowChange = Exclude<Change, { kind: 'truncate' }>;

/** Everything about a shape that survives a restart (written to its folder as shape.json). */
export interface ShapeMetadata {
  handle: string;
  definition: ShapeDefinition;
  relationOid: number;
  context: MessageContext;
  /** The `electric-schema` header, fixed for the shape's life. */
  schemaHeader: string;
  /** Columns as replication describes them; a different Relation message rotates the shape. */
  columnSignature: string;
  snapshot: TransactionVisibility | undefined;
  snapshotComplete: boolean;
  /** The typed where clause, when the shape has one. */
  filter?: FilterSpec;
}

type PositionedChange = { change: RowChange; position: number };

/**
 * One shape: its durable log plus what is needed to append to it. Changes that arrive while the
 * initial snapshot runs wait in `pending` and are filtered against the snapshot once it is done.
 */
export class Shape {
  #pending: { transaction: Transaction; changes: PositionedChange[] }[] = [];
  /**
   * The where clause compiled, on first use: most shapes of a table with many are never routed a
   * change (the router finds equality-filtered shapes by value), and need no evaluator in memory.
   */
  #matches: ((row: Row) => boolean) | undefined;
  readonly #waiters = new Set<() => void>();
  #deleted = false;
  /**
   * Why the snapshot failed, set before the shape is deleted: a request that has been served none
   * of it answers this error, as it would have had it waited for the whole snapshot.
   */
  snapshotFailure: unknown;
  /** When a request last read this shape (a shape loaded at start counts as read then). */
  #lastReadAt = Date.now();

  constructor(
    readonly metadata: ShapeMetadata,
    readonly log: ShapeLog,
  ) {
    // Compiled once now so a stored clause that cannot be fails here, where the shape is
    // refused, rather than at its first change, in the middle of replication.
    if (metadata.filter) compileFilter(metadata.filter.root);
  }

  get handle(): string {
    return this.metadata.handle;
  }

  get ready(): boolean {
    return this.metadata.snapshotComplete;
  }

  get deleted(): boolean {
    return this.#deleted;
  }

  /** A request is served from this shape: it is not idle (one clock read, no allocation). */
  markRead(): void {
    this.#lastReadAt = Date.now();
  }

  /**
   * Whether nobody has read the shape for `idleMs`: not while it is being created, nor while a
   * long-poll is held on it (that reader may wait for a long time between two requests).
   */
  idleFor(idleMs: number, now: number): boolean {
    return this.ready && this.#waiters.size === 0 && now - this.#lastReadAt >= idleMs;
  }

  /**
   * Appends this shape's part of a committed transaction (not yet durable: the owner flushes).
   * Replays at or below what the log holds, and transactions the snapshot already contains, are
   * dropped. Returns whether anything was appended.
   */
  applyTransaction(transaction: Transaction, all: PositionedChange[]): boolean {
    const { filter } = this.metadata;
    if (filter) this.#matches ??= compileFilter(filter.root);
    const changes = this.#matches ? filterChanges(this.#matches, all) : all;
    if (changes.length === 0) return false;
    if (!this.ready) {
      this.#pending.push({ transaction, changes });
      return false;
    }
    return this.#append(transaction, changes);
  }

  /** Appends changes already filtered by the where clause. */
  #append(transaction: Transaction, changes: PositionedChange[]): boolean {
    // The log's last commit, read from the log itself: another server may have appended to it
    // (a shared storage this server read before it took over writing).
    const last = this.log.lastOffset;
    if (last && last.tx > 0n && transaction.commitLsn <= last.tx) return false;
    const { snapshot } = this.metadata;
    if (snapshot && isVisibleTo(snapshot, transaction.xid, transaction.commitLsn)) return false;
    const entries = transactionEntries(this.metadata.context, transaction, changes);
    if (entries.length === 0) return false;
    this.log.append(entries);
    return true;
  }

  /** The snapshot is durable: replay what arrived meanwhile. Returns whether anything was appended. */
  completeSnapshot(): boolean {
    this.metadata.snapshotComplete = true;
    const pending = this.#pending;
    this.#pending = [];
    let appended = false;
    for (const { transaction, changes } of pending) {
      appended = this.#append(transaction, changes) || appended;
    }
    return appended;
  }

  /**
   * Resolves when new durable entries may exist, the shape is deleted, the server closes
   * (`ShapeRegistry.wakeAll`) or `timeoutMs` passes. No per-waiter listener on a shared signal:
   * with thousands of held long-polls that would cost O(n) per add and remove. `stop`, a signal
   * of this waiter's own (a WebSocket subscription's), ends the wait at once, so a subscription
   * that ends leaves no waiter and timer behind.
   */
  waitForChange(timeoutMs: number, stop?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        stop?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#waiters.add(done);
      stop?.addEventListener('abort', done, { once: true });
      if (stop?.aborted) done();
    });
  }

  /** New entries are durable (or the shape is gone): wake every long-poll. */
  notify(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  markDeleted(): void {
    this.#deleted = true;
    this.notify();
  }

  /**
   * The shape's current end as served (`offset=now`, reads that serve nothing, the out-of-bounds
   * bound): the last durable change, or `0_inf` while the log holds only the snapshot, as
   * Electric reports a shape with no changes yet (docs/protocol.md §3.2).
   */
  get endOffset(): LogOffset {
    const durable = this.log.durableOffset;
    return durable && durable.tx > 0n ? durable : SNAPSHOT_END;
  }

  hasEntriesAfter(offset: LogOffset | 'before-all'): boolean {
    const durable = this.log.durableOffset;
    if (!durable) return false;
    return offset === 'before-all' || compareLogOffsets(durable, offset) > 0;
  }

  describe(): string {
    const { table } = this.metadata.definition;
    const last = this.log.durableOffset;
    return `${table.schema}.${table.name} ${this.handle} at ${last ? formatLogOffset(last) : 'empty'}`;
  }
}

/**
 * This shape's view of a transaction's changes under its where clause: a row updated into the
 * shape arrives as an insert (of the whole row), one updated out of it as a delete.
 */
function filterChanges(
  matches: (row: Row) => boolean,
  changes: PositionedChange[],
): PositionedChange[] {
  const kept: PositionedChange[] = [];
  for (const { change, position } of changes) {
    switch (change.kind) {
      case 'insert':
        if (matches(change.newRow)) kept.push({ change, position });
        break;
      case 'delete':
        if (matches(change.oldRow)) kept.push({ change, position });
        break;
      case 'update': {
        const oldRow = change.oldRow ?? change.newRow;
        const wasIn = matches(oldRow);
        const isIn = matches(change.newRow);
        if (wasIn && isIn) kept.push({ change, position });
        else if (wasIn)
          kept.push({ change: { kind: 'delete', relation: change.relation, oldRow }, position });
        else if (isIn) {
          kept.push({
            change: { kind: 'insert', relation: change.relation, newRow: change.newRow },
            position,
          });
        }
        break;
      }
    }
  }
  return kept;
}
