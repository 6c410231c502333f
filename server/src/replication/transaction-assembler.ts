import { lsnToBigInt } from '@sluice/protocol';
import type { Pgoutput } from 'pg-logical-replication';
import type { Change, RelationInfo, Transaction } from '../pg/transaction.js';
import { ReplicationError } from './replication-error.js';

export interface AssemblyHandlers {
  /** Each committed transaction in commit order; the next one waits for this to settle. */
  onTransaction(transaction: Transaction): Promise<void>;
  /** A relation's shape as replication sees it (columns may have changed). */
  onRelation(relation: RelationInfo): Promise<void>;
}

/**
 * Builds whole transactions from one stream's pgoutput messages: changes are collected from
 * Begin to Commit, and shapes only ever see a transaction once it has committed.
 */
export class TransactionAssembler {
  readonly #handlers: AssemblyHandlers;
  #pending: { xid: number; commitLsn: bigint; changes: Change[] } | undefined;

  constructor(handlers: AssemblyHandlers) {
    this.#handlers = handlers;
  }

  /**
   * Takes the next message in stream order. A relation or a commit goes to the handlers: the
   * promise returned settles once they are done with it, and the next message must wait for
   * it. Other messages are only collected and return nothing to wait for (a promise per changed
   * row was a measurable share of replication's time). A message out of place throws.
   */
  add(message: Pgoutput.Message): Promise<void> | undefined {
    switch (message.tag) {
      case 'begin':
        this.#pending = {
          xid: message.xid,
          commitLsn: lsnToBigInt(message.commitLsn ?? '0/0'),
          changes: [],
        };
        return;
      case 'relation':
        return this.#handlers.onRelation(toRelation(message));
      case 'insert':
        this.#push({ kind: 'insert', relation: toRelation(message.relation), newRow: message.new });
        return;
      case 'update':
        this.#push({
          kind: 'update',
          relation: toRelation(message.relation),
          oldRow: message.old ?? undefined,
          newRow: message.new,
        });
        return;
      case 'delete': {
        const oldRow = message.old ?? message.key;
        if (!oldRow) throw new ReplicationError('delete without old row', undefined);
        this.#push({ kind: 'delete', relation: toRelation(message.relation), oldRow });
        return;
      }
      case 'truncate':
        this.#push({ kind: 'truncate', relations: message.relations.map(toRelation) });
        return;
      case 'commit': {
        const pending = this.#pending;
        this.#pending = undefined;
        if (!pending) throw new ReplicationError('commit without begin', undefined);
        return this.#handlers.onTransaction({
          xid: pending.xid,
          commitLsn: lsnToBigInt(message.commitLsn ?? '0/0'),
          endLsn: lsnToBigInt(message.commitEndLsn ?? '0/0'),
          changes: pending.changes,
        });
      }
      default:
        return; // origin, type and logical messages carry nothing a shape needs
    }
  }

  #push(change: Change): void {
    if (!this.#pending)
      throw new ReplicationError(`${change.kind} outside a transaction`, undefined);
    this.#pending.changes.push(change);
  }
}

/** Relation objects are cached by the parser; copy what shapes need into a stable form. */
const relationCache = new WeakMap<Pgoutput.MessageRelation, RelationInfo>();
function toRelation(relation: Pgoutput.MessageRelation): RelationInfo {
  let info = relationCache.get(relation);
  if (!info) {
    info = {
      oid: relation.relationOid,
      schema: relation.schema,
      name: relation.name,
      columns: relation.columns.map((c) => ({
        name: c.name,
        typeOid: c.typeOid,
        typeMod: c.typeMod,
      })),
      keyColumns: relation.keyColumns,
    };
    relationCache.set(relation, info);
  }
  return info;
}
