import {
  CONTROL,
  SNAPSHOT_END,
  compareLogOffsets,
  formatLogOffset,
  type LogOffset,
} from '@sluice/protocol';
import type { Change, Row, Transaction } from '../pg/transaction.js';
import type { LogEntry, ShapeLog } from '../storage/shape-storage.js';
import { compileFilter } from '../where/filter-evaluator.js';
import { topSubqueries, type FilterSpec } from '../where/filter-spec.js';
import {
  messageWriter,
  taggedInsertMessage,
  transactionEntries,
  type MessageContext,
  type MessageWriter,
} from './change-messages.js';
import { SubqueryResult, type Tuple } from './subquery-result.js';
import { SubqueryState, type ResultChange } from './subquery-state.js';
import { tagSalt, type ShapeDefinition } from './shape-definition.js';
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
  /**
   * A subquery shape's subquery results, as of commits (`lsn`): the newest whose commit the log
   * holds is the one to resume from (a newer one was written before a flush that failed).
   */
  subqueryResults?: StoredResults[];
}

/** A transaction for a subquery shape: its rows, and its changes of tables the subqueries read. */
export interface DeferredTransaction {
  transaction: Transaction;
  changes: PositionedChange[];
  dependencyChanges: RowChange[];
}

/** Subquery results as of one commit (0 for the snapshot), by subquery id. */
export interface StoredResults {
  lsn: string;
  results: Record<number, Tuple[]>;
}

/** What a subquery shape's transaction brings besides its own rows (SubqueryRefresh). */
export interface ResultRefresh {
  results: Map<number, SubqueryResult>;
  change: ResultChange;
  /** The rows moved in, read in `visibility`. */
  rows: Row[];
  visibility: TransactionVisibility;
}

/** `upsert`: sent as a whole-row insert (filterChanges). */
type PositionedChange = { change: RowChange; position: number; upsert?: boolean };

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
  /** How its change messages are written, compiled on first use (for the same reason). */
  #writer: MessageWriter | undefined;
  readonly #waiters = new Set<() => void>();
  #deleted = false;
  /**
   * Why the snapshot failed, set before the shape is deleted: a request that has been served none
   * of it answers this error, as it would have had it waited for the whole snapshot.
   */
  snapshotFailure: unknown;
  /** When a request last read this shape (a shape loaded at start counts as read then). */
  #lastReadAt = Date.now();

  /** For a where clause with subqueries: their results, and tags. */
  readonly subqueries: SubqueryState | undefined;
  /** Subquery results not yet written with the metadata (written before the log's flush). */
  #unsavedResults = false;
  /** Subquery shapes' work runs one piece at a time, in order (SubqueryRefresh). */
  #serial: Promise<unknown> = Promise.resolve();
  /** The snapshot of the last subquery refresh: transactions it saw need no other. */
  lastRefresh: TransactionVisibility | undefined;
  /** The snapshot of the last refresh that moved rows in (appendWithResults). */
  #movedInAt: TransactionVisibility | undefined;

  constructor(
    readonly metadata: ShapeMetadata,
    readonly log: ShapeLog,
    readonly writeMetadata: (json: string) => Promise<void> = () => Promise.resolve(),
  ) {
    // Compiled once now so a stored clause that cannot be fails here, where the shape is
    // refused, rather than at its first change, in the middle of replication.
    if (metadata.filter) compileFilter(metadata.filter.root);
    const root = metadata.filter?.root;
    this.subqueries =
      root && topSubqueries(root).length > 0
        ? new SubqueryState(tagSalt(metadata.definition), root)
        : undefined;
    if (this.subqueries) this.resumeResults(metadata.subqueryResults ?? []);
  }

  /**
   * Takes the newest of stored subquery results whose commit the log holds: on opening the
   * shape, and when this server takes over writing a shape another one wrote.
   */
  resumeResults(versions: StoredResults[]): void {
    const state = this.subqueries!;
    const last = this.log.lastOffset?.tx ?? 0n;
    this.metadata.subqueryResults = versions;
    const stored = versions.filter((version) => BigInt(version.lsn) <= last).at(-1);
    // None: a server that read this shape's metadata before its writer saved what its log holds
    // (ShapeRegistry starts such a shape over when it must extend it).
    state.setResults(
      stored ? resultsFrom(state, stored.results) : new Map<number, SubqueryResult>(),
    );
  }

  /** A subquery shape's transactions while its snapshot runs, handled once it is done. */
  #deferred: DeferredTransaction[] = [];

  defer(deferred: DeferredTransaction): void {
    this.#deferred.push(deferred);
  }

  takeDeferred(): DeferredTransaction[] {
    const deferred = this.#deferred;
    this.#deferred = [];
    return deferred;
  }

  /** Runs `work` after every piece of this shape's work queued before it. */
  serially<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#serial.then(work);
    this.#serial = next.catch(() => undefined);
    return next;
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

  /** Records new subquery results as of `lsn` (0: the snapshot), saved at the next flush. */
  recordResults(results: Map<number, SubqueryResult>, lsn: bigint): void {
    this.subqueries!.setResults(results);
    const stored: StoredResults = { lsn: lsn.toString(), results: {} };
    for (const [id, result] of results) stored.results[id] = result.tuples();
    // Every version since the last flush stays: the log may end up durable at any of them.
    this.metadata.subqueryResults = [...(this.metadata.subqueryResults ?? []), stored];
    this.#unsavedResults = true;
  }

  /**
   * Makes appended entries durable. A subquery shape saves its new results first, between two
   * pieces of its work (`serially`), so the metadata written holds the results of every entry
   * the log flush makes durable.
   */
  flush(): Promise<void> {
    if (!this.subqueries) return this.log.flush();
    return this.serially(() => this.#flushResultsAndLog());
  }

  /**
   * Writes the shape's metadata whole (its creation's last step). A subquery shape's flushes
   * write it too, with new results, so this takes its turn among them (`serially`): two writes
   * of one metadata file at once collide on its temporary file, and the loser's error deleted
   * the shape it was creating.
   */
  saveMetadata(): Promise<void> {
    const save = async () => {
      if (!this.#deleted) await this.writeMetadata(JSON.stringify(this.metadata));
    };
    return this.subqueries ? this.serially(save) : save();
  }

  async #flushResultsAndLog(): Promise<void> {
    // Deleted (started over) while this waited its turn: its folder is gone.
    if (this.#deleted) return;
    const versions = this.metadata.subqueryResults ?? [];
    if (this.#unsavedResults) {
      this.#unsavedResults = false;
      try {
        await this.writeMetadata(JSON.stringify(this.metadata));
      } catch (error) {
        this.#unsavedResults = true;
        throw error;
      }
    }
    await this.log.flush();
    // The log holds the newest results' commit now: the older versions are not needed again.
    if (this.metadata.subqueryResults === versions && versions.length > 1) {
      this.metadata.subqueryResults = versions.slice(-1);
    }
  }

  /**
   * Appends this shape's part of a committed transaction (not yet durable: the owner flushes).
   * Replays at or below what the log holds, and transactions the snapshot already contains, are
   * dropped. Returns whether anything was appended.
   */
  applyTransaction(transaction: Transaction, all: PositionedChange[]): boolean {
    const { filter } = this.metadata;
    if (filter) this.#matches ??= compileFilter(filter.root);
    const changes = this.#matches ? filterChanges(this.#matches, this.#matches, all) : all;
    if (changes.length === 0) return false;
    if (!this.ready) {
      this.#pending.push({ transaction, changes });
      return false;
    }
    return this.#append(transaction, changes);
  }

  /**
   * Whether the log or the snapshot already holds the transaction. The log's last commit is
   * read from the log itself: another server may have appended to it (a shared storage this
   * server read before it took over writing).
   */
  holds(transaction: Transaction): boolean {
    const last = this.log.lastOffset;
    if (last && last.tx > 0n && transaction.commitLsn <= last.tx) return true;
    const { snapshot } = this.metadata;
    return snapshot !== undefined && isVisibleTo(snapshot, transaction.xid, transaction.commitLsn);
  }

  /**
   * Appends a subquery shape's part of a transaction: a move-out of the rows the new results
   * (`refresh`, when the transaction touched a table a subquery reads) no longer admit, the
   * transaction's own rows judged by the new results, then the rows moved in (a move-in event,
   * the rows, and a snapshot-end of the query that read them). Returns whether anything was.
   */
  appendWithResults(
    transaction: Transaction,
    all: PositionedChange[],
    refresh: ResultRefresh | undefined,
  ): boolean {
    const state = this.subqueries!;
    const before = state.currentResults;
    if (refresh) {
      this.recordResults(refresh.results, transaction.commitLsn);
      if (refresh.change.moveIn.length > 0) this.#movedInAt = refresh.visibility;
    }
    // Moved-in rows were read in a snapshot that may see this transaction: clients may hold
    // them as they are after it, or lack rows it updates within the shape, so those are sent
    // whole (an insert; clients upsert).
    const ahead = this.#movedInAt;
    const upsert =
      ahead !== undefined && isVisibleTo(ahead, transaction.xid, transaction.commitLsn);
    const changes = filterChanges(
      (row) => state.matchesUnder(before, row),
      (row) => state.matches(row),
      all,
      upsert,
    );
    const { context } = this.metadata;
    const tx = transaction.commitLsn;
    const txids = [transaction.xid];
    const entries: LogEntry[] = [];
    const moveOut = refresh?.change.moveOut ?? [];
    const moveIn = refresh?.change.moveIn ?? [];
    // The transaction's last entry carries `last`, whichever it is: a restart cuts a transaction
    // a crash left without it (cutTornTransaction), moves and all.
    entries.push(
      ...transactionEntries(this.#messageWriter(), transaction, changes, {
        tagsOf: (row) => state.rowTags(row),
        more: moveOut.length > 0 || moveIn.length > 0,
      }),
    );
    let op = (entries.at(-1)?.offset.op ?? -1) + 1;
    const add = (headers: Record<string, unknown>, isLast: boolean) =>
      entries.push({
        offset: { tx, op: op++ },
        json: JSON.stringify({ headers: isLast ? { ...headers, last: true } : headers }),
      });
    // After the transaction's own rows, which were judged against the results before it too: a
    // row it moved from a value leaving to one staying arrives as an update first, its tags
    // changed, and the move-out then spares it.
    if (moveOut.length > 0) {
      add({ event: 'move-out', patterns: moveOut, txids }, moveIn.length === 0);
    }
    if (refresh && moveIn.length > 0) {
      add({ event: 'move-in', patterns: moveIn, txids }, false);
      for (const row of refresh.rows) {
        entries.push({ offset: { tx, op: op++ }, json: taggedInsertMessage(context, row, state) });
      }
      const { xmin, xmax, xip } = refresh.visibility;
      add({ control: CONTROL.snapshotEnd, xmin, xmax, xip_list: xip }, true);
    }
    if (entries.length === 0) return false;
    this.log.append(entries);
    return true;
  }

  /** Appends changes already filtered by the where clause. */
  #append(transaction: Transaction, changes: PositionedChange[]): boolean {
    if (this.holds(transaction)) return false;
    const entries = transactionEntries(this.#messageWriter(), transaction, changes);
    if (entries.length === 0) return false;
    this.log.append(entries);
    return true;
  }

  #messageWriter(): MessageWriter {
    return (this.#writer ??= messageWriter(this.metadata.context));
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
 * shape arrives as an insert (of the whole row), one updated out of it as a delete. `wasIn`
 * judges rows as they were before the transaction, `isIn` as they are after it (they differ for
 * a subquery shape whose results the transaction changed). `upsert`: clients may lack rows the
 * shape holds, so a row updated within it is sent whole, as an insert.
 */
function filterChanges(
  wasIn: (row: Row) => boolean,
  isIn: (row: Row) => boolean,
  changes: PositionedChange[],
  upsert = false,
): PositionedChange[] {
  const kept: PositionedChange[] = [];
  for (const { change, position } of changes) {
    switch (change.kind) {
      case 'insert':
        if (isIn(change.newRow)) kept.push({ change, position });
        break;
      case 'delete':
        if (wasIn(change.oldRow)) kept.push({ change, position });
        break;
      case 'update': {
        const oldRow = change.oldRow ?? change.newRow;
        const was = wasIn(oldRow);
        const is = isIn(change.newRow);
        if (was && is) kept.push(upsert ? { change, position, upsert } : { change, position });
        else if (was)
          kept.push({ change: { kind: 'delete', relation: change.relation, oldRow }, position });
        else if (is) {
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

/** Stored results read back into sets. */
export function resultsFrom(
  state: SubqueryState,
  stored: Record<number, Tuple[]>,
): Map<number, SubqueryResult> {
  return new Map(
    state.subqueries.map((node) => [
      node.id,
      new SubqueryResult(node.columns.length, stored[node.id] ?? []),
    ]),
  );
}
