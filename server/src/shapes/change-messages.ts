import type { ChangeHeaders, LogOffset, Operation, WireChangeMessage } from '@sluice/protocol';
import type { Change, Row } from '../pg/transaction.js';
import type { LogEntry } from '../storage/shape-storage.js';
import { buildRowKey, escapeKeyValue, relationKeyPrefix } from './row-key.js';

/** How one shape turns rows into wire messages (docs/protocol.md §4). */
export interface MessageContext {
  schema: string;
  table: string;
  /** Columns the shape serves, in table order. */
  columns: string[];
  /** Columns that identify a row (the primary key, or every column sorted by name). */
  keyColumns: string[];
  replica: 'default' | 'full';
}

function project(row: Row, columns: string[]): Record<string, string | null> {
  const value: Record<string, string | null> = {};
  for (const column of columns) value[column] = row[column] ?? null;
  return value;
}

function keyOf(context: MessageContext, row: Row): string {
  return buildRowKey(
    context.schema,
    context.table,
    context.keyColumns.map((column) => row[column] ?? null),
  );
}

/**
 * Builds snapshot messages (inserts carrying only operation and relation) straight from COPY's
 * values in `selectColumns` order. This is the hot path of initial syncs: the fixed parts of the
 * JSON are made once per shape and only the values are serialised per row, with no row object.
 * Subset snapshot rows add their `snapshot_mark` (`extraHeaders`).
 */
export function snapshotMessageBuilder(
  context: MessageContext,
  selectColumns: readonly string[],
  extraHeaders: Pick<ChangeHeaders, 'snapshot_mark'> = {},
): (values: readonly (string | null)[]) => string {
  const prefix = relationKeyPrefix(context.schema, context.table);
  const keyIndexes = context.keyColumns.map((column) => selectColumns.indexOf(column));
  const valueParts = context.columns.map((column, i) => ({
    index: selectColumns.indexOf(column),
    label: `${i === 0 ? '{' : ','}${JSON.stringify(column)}:`,
  }));
  const close = valueParts.length === 0 ? '{}' : '}';
  const headers = JSON.stringify({
    operation: 'insert',
    relation: [context.schema, context.table],
    ...extraHeaders,
  } satisfies ChangeHeaders);
  // The key's JSON is written piece by piece: its prefix escaped once, then each part, with no
  // key string made per row only to be escaped whole (its quotes always take JSON's slow path).
  const keyHead = `{"key":${JSON.stringify(prefix).slice(0, -1)}`;
  return (values) => {
    let text = keyHead;
    for (const index of keyIndexes) text += keyPartJson(values[index] ?? null);
    text += '","value":';
    for (const { index, label } of valueParts) {
      const value = values[index];
      text += label + (value === null || value === undefined ? 'null' : JSON.stringify(value));
    }
    return `${text}${close},"headers":${headers}}`;
  };
}

/**
 * One key part (`buildRowKey`'s `/"<value>"`, or `/_` for NULL) as it reads inside the
 * key's JSON string.
 */
function keyPartJson(value: string | null): string {
  if (value === null) return '/_';
  const part = escapeKeyValue(value);
  return `/\\"${NEEDS_ESCAPE.test(part) ? JSON.stringify(part).slice(1, -1) : part}\\"`;
}

/** What JSON.stringify escapes in a string: quotes, backslashes, controls, lone surrogates. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** How a subquery shape's change messages are tagged (docs/protocol.md §13): each row's tags. */
export interface EntryTagging {
  tagsOf: (row: Row) => { tags: string[]; active_conditions: boolean[] };
  /** Entries of the same transaction follow (a move-in): the last of those carries `last`. */
  more: boolean;
}

/**
 * The log entries of one transaction for one shape. `changes` are this shape's changes, each with
 * its position in the whole transaction, so offsets are the same on every replay. An update that
 * changes the key becomes a delete of the old key and an insert of the new one.
 */
export function transactionEntries(
  context: MessageContext,
  transaction: { xid: number; commitLsn: bigint },
  changes: { change: Exclude<Change, { kind: 'truncate' }>; position: number; upsert?: boolean }[],
  tagging?: EntryTagging,
): LogEntry[] {
  const entries: { offset: LogOffset; message: WireChangeMessage }[] = [];
  const lsn = transaction.commitLsn.toString();
  const headers = (operation: Operation, op: number): ChangeHeaders => ({
    operation,
    relation: [context.schema, context.table],
    lsn,
    op_position: op,
    txids: [transaction.xid],
  });
  // The row each message shows, and for an update the row before, for its tags.
  const rows = new Map<WireChangeMessage, { row: Row; before?: Row }>();
  const add = (op: number, message: WireChangeMessage, row?: Row, before?: Row) => {
    entries.push({ offset: { tx: transaction.commitLsn, op }, message });
    if (row) rows.set(message, { row, before });
  };

  // Rows that a key-changing update moved into a key during this transaction, by key. With
  // deferred key constraints two rows can swap keys (2→3, 3→2): the second update's "delete 3"
  // would remove the row just moved to 3, since clients hold one row per key, so it is left out
  // when the row leaving 3 is not the one that moved in (a row moved twice, 1→2→3, does leave
  // 2). Without row identities two rows identical in every column stay indistinguishable here.
  const movedInto = new Map<string, string>();

  for (const { change, position, upsert } of changes) {
    const op = position * 2;
    switch (change.kind) {
      case 'insert':
        add(
          op,
          {
            key: keyOf(context, change.newRow),
            value: project(change.newRow, context.columns),
            headers: headers('insert', op),
          },
          change.newRow,
        );
        break;
      case 'delete':
        movedInto.delete(keyOf(context, change.oldRow));
        add(op, deleteMessage(context, change.oldRow, headers('delete', op)), change.oldRow);
        break;
      case 'update': {
        const oldRow = change.oldRow ?? change.newRow;
        const oldKey = keyOf(context, oldRow);
        const newKey = keyOf(context, change.newRow);
        if (oldKey !== newKey) {
          const movedIn = movedInto.get(oldKey);
          movedInto.delete(oldKey);
          if (movedIn === undefined || movedIn === JSON.stringify(oldRow)) {
            add(op, deleteMessage(context, oldRow, headers('delete', op)), oldRow);
          }
          movedInto.set(newKey, JSON.stringify(change.newRow));
          add(
            op + 1,
            {
              key: newKey,
              value: project(change.newRow, context.columns),
              headers: headers('insert', op + 1),
            },
            change.newRow,
          );
          break;
        }
        if (upsert) {
          add(
            op,
            {
              key: newKey,
              value: project(change.newRow, context.columns),
              headers: headers('insert', op),
            },
            change.newRow,
            oldRow,
          );
          break;
        }
        const changed = context.columns.filter(
          (c) => (oldRow[c] ?? null) !== (change.newRow[c] ?? null),
        );
        if (context.replica === 'full') {
          add(
            op,
            {
              key: newKey,
              value: project(change.newRow, context.columns),
              old_value: project(oldRow, changed),
              headers: headers('update', op),
            },
            change.newRow,
            oldRow,
          );
        } else {
          const columns = context.columns.filter(
            (c) => context.keyColumns.includes(c) || changed.includes(c),
          );
          add(
            op,
            { key: newKey, value: project(change.newRow, columns), headers: headers('update', op) },
            change.newRow,
            oldRow,
          );
        }
        break;
      }
    }
  }
  const tagged = tagging ? tagEntries(entries, rows, tagging) : entries;
  const last = tagged.at(-1);
  if (last && !tagging?.more) last.message.headers.last = true;
  return tagged.map(({ offset, message }) => ({ offset, json: JSON.stringify(message) }));
}

/**
 * Adds each row's tags. An update whose tags changed says so in two messages, at its op and
 * the next (free: only a key change uses it, and that is a delete and an insert): the first
 * drops the old tags (`removed_tags`), the second adds the new ones. In one message TanStack DB
 * adds the new tags before it drops the old ones, and so unindexes the slots they share: a
 * later move-out of a value the row still has would miss it.
 */
function tagEntries(
  entries: { offset: LogOffset; message: WireChangeMessage }[],
  rows: Map<WireChangeMessage, { row: Row; before?: Row }>,
  tagging: EntryTagging,
): { offset: LogOffset; message: WireChangeMessage }[] {
  return entries.flatMap((entry) => {
    const { message, offset } = entry;
    const shown = rows.get(message);
    if (!shown) return [entry];
    const tags = tagging.tagsOf(shown.row);
    Object.assign(message.headers, tags);
    if (!shown.before) return [entry];
    const now = new Set(tags.tags);
    const removed = tagging.tagsOf(shown.before).tags.filter((tag) => !now.has(tag));
    if (removed.length === 0) return [entry];
    const dropping: ChangeHeaders = { ...message.headers, removed_tags: removed };
    delete dropping.tags;
    return [
      { offset, message: { ...message, headers: dropping } },
      {
        offset: { tx: offset.tx, op: offset.op + 1 },
        message: { ...message, headers: { ...message.headers, op_position: offset.op + 1 } },
      },
    ];
  });
}

function deleteMessage(
  context: MessageContext,
  oldRow: Row,
  headers: ChangeHeaders,
): WireChangeMessage {
  const columns =
    context.replica === 'full'
      ? context.columns
      : context.columns.filter((c) => context.keyColumns.includes(c));
  return { key: keyOf(context, oldRow), value: project(oldRow, columns), headers };
}

/** An insert with its tags: a row of a subquery shape's snapshot, or one a move-in brought. */
export function taggedInsertMessage(
  context: MessageContext,
  row: Row,
  tagging: { rowTags: (row: Row) => { tags: string[]; active_conditions: boolean[] } },
  extraHeaders: Pick<ChangeHeaders, 'snapshot_mark'> = {},
): string {
  return JSON.stringify({
    key: keyOf(context, row),
    value: project(row, context.columns),
    headers: {
      operation: 'insert',
      relation: [context.schema, context.table],
      ...extraHeaders,
      ...tagging.rowTags(row),
    },
  } satisfies WireChangeMessage);
}

/** A row from values read in `columns` order (COPY's). */
export function rowOf(columns: readonly string[], values: readonly (string | null)[]): Row {
  const row: Row = {};
  columns.forEach((column, i) => (row[column] = values[i] ?? null));
  return row;
}
