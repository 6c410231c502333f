import { formatTx } from '@sluice/protocol';
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

function project(row: Row, columns: readonly string[]): Record<string, string | null> {
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
  const keyHead = keyJsonHead(context);
  return (values) => {
    let text = keyHead;
    for (const index of keyIndexes) text += keyPartJson(values[index] ?? null);
    text += '","value":';
    for (const { index, label } of valueParts) {
      const value = values[index];
      text += label + (value === null || value === undefined ? 'null' : jsonString(value));
    }
    return `${text}${close},"headers":${headers}}`;
  };
}

/**
 * `{"key":"<prefix>` of a shape's messages. The key's JSON is written piece by piece: its prefix
 * escaped once, then each part (`keyPartJson`) and the closing quote, with no key string made per
 * row only to be escaped whole (its quotes always take JSON's slow path).
 */
function keyJsonHead(context: MessageContext): string {
  return `{"key":${JSON.stringify(relationKeyPrefix(context.schema, context.table)).slice(0, -1)}`;
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

/**
 * `JSON.stringify(value)` for a string, without its call when nothing needs escaping (most
 * values): about a quarter of building a row's message.
 */
function jsonString(value: string): string {
  return NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`;
}

/** How a subquery shape's change messages are tagged (docs/protocol.md §13): each row's tags. */
export interface EntryTagging {
  tagsOf: (row: Row) => { tags: string[]; active_conditions: boolean[] };
  /** Entries of the same transaction follow (a move-in): the last of those carries `last`. */
  more: boolean;
}

/**
 * One message of a transaction before it is written: the row it shows (its key and `value` come
 * from it), the columns of `value`, and for an update the row before it.
 */
interface Draft {
  op: number;
  operation: Operation;
  row: Row;
  columns: readonly string[];
  before?: Row;
  /** For a `replica=full` update: the columns it changed, whose old values go in `old_value`. */
  oldValueColumns?: readonly string[];
}

/**
 * The log entries of one transaction for one shape. `changes` are this shape's changes, each with
 * its position in the whole transaction, so offsets are the same on every replay. An update that
 * changes the key becomes a delete of the old key and an insert of the new one.
 */
export function transactionEntries(
  writer: MessageWriter,
  transaction: { xid: number; commitLsn: bigint },
  changes: { change: Exclude<Change, { kind: 'truncate' }>; position: number; upsert?: boolean }[],
  tagging?: EntryTagging,
): LogEntry[] {
  const { context, write, deleteColumns } = writer;
  const drafts = changeDrafts(context, deleteColumns, changes);
  if (tagging) return taggedEntries(context, transaction, drafts, tagging);
  // The hot path of replication: written straight to JSON, with no message object per change.
  const tx = transaction.commitLsn;
  const lsn = formatTx(tx);
  const entries: LogEntry[] = new Array<LogEntry>(drafts.length);
  for (let i = 0; i < drafts.length; i++) {
    const draft = drafts[i]!;
    entries[i] = {
      offset: { tx, op: draft.op },
      json: write(draft, lsn, transaction.xid, i === drafts.length - 1),
    };
  }
  return entries;
}

/** A transaction's changes as this shape's messages (see `transactionEntries`). */
function changeDrafts(
  context: MessageContext,
  deleteColumns: readonly string[],
  changes: { change: Exclude<Change, { kind: 'truncate' }>; position: number; upsert?: boolean }[],
): Draft[] {
  const drafts: Draft[] = [];
  const remove = (op: number, row: Row) =>
    drafts.push({ op, operation: 'delete', row, columns: deleteColumns });

  // Rows that a key-changing update moved into a key during this transaction, by key. With
  // deferred key constraints two rows can swap keys (2→3, 3→2): the second update's "delete 3"
  // would remove the row just moved to 3, since clients hold one row per key, so it is left out
  // when the row leaving 3 is not the one that moved in (a row moved twice, 1→2→3, does leave
  // 2). Without row identities two rows identical in every column stay indistinguishable here.
  let movedInto: Map<string, string> | undefined;

  for (const { change, position, upsert } of changes) {
    const op = position * 2;
    switch (change.kind) {
      case 'insert':
        drafts.push({ op, operation: 'insert', row: change.newRow, columns: context.columns });
        break;
      case 'delete':
        movedInto?.delete(keyOf(context, change.oldRow));
        remove(op, change.oldRow);
        break;
      case 'update': {
        const oldRow = change.oldRow ?? change.newRow;
        const oldKey = keyOf(context, oldRow);
        const newKey = keyOf(context, change.newRow);
        if (oldKey !== newKey) {
          movedInto ??= new Map();
          const movedIn = movedInto.get(oldKey);
          movedInto.delete(oldKey);
          if (movedIn === undefined || movedIn === JSON.stringify(oldRow)) remove(op, oldRow);
          movedInto.set(newKey, JSON.stringify(change.newRow));
          drafts.push({
            op: op + 1,
            operation: 'insert',
            row: change.newRow,
            columns: context.columns,
          });
          break;
        }
        const row = change.newRow;
        if (upsert) {
          drafts.push({ op, operation: 'insert', row, columns: context.columns, before: oldRow });
          break;
        }
        const changed = context.columns.filter((c) => (oldRow[c] ?? null) !== (row[c] ?? null));
        drafts.push(
          context.replica === 'full'
            ? {
                op,
                operation: 'update',
                row,
                columns: context.columns,
                before: oldRow,
                oldValueColumns: changed,
              }
            : {
                op,
                operation: 'update',
                row,
                columns: context.columns.filter(
                  (c) => context.keyColumns.includes(c) || changed.includes(c),
                ),
                before: oldRow,
              },
        );
        break;
      }
    }
  }
  return drafts;
}

/**
 * What a shape's change messages are made with, compiled once per shape from its context
 * (the shape keeps it: looking it up per transaction cost as much as writing a message).
 */
export interface MessageWriter {
  context: MessageContext;
  write: ReturnType<typeof compileMessageWriter>;
  /** What a delete's `value` holds: the key columns, or every column with `replica=full`. */
  deleteColumns: readonly string[];
}

export function messageWriter(context: MessageContext): MessageWriter {
  const deleteColumns =
    context.replica === 'full'
      ? context.columns
      : context.columns.filter((c) => context.keyColumns.includes(c));
  return { context, write: compileMessageWriter(context), deleteColumns };
}

/**
 * Writes a draft as the JSON that `JSON.stringify` makes of its message object (key, value,
 * old_value, headers: operation, relation, lsn, op_position, txids, last), with the fixed parts
 * escaped once per shape.
 */
function compileMessageWriter(
  context: MessageContext,
): (draft: Draft, lsn: string, xid: number, last: boolean) => string {
  const keyHead = keyJsonHead(context);
  const labels = new Map(context.columns.map((column) => [column, `${JSON.stringify(column)}:`]));
  const relation = `,"relation":${JSON.stringify([context.schema, context.table])}`;
  const objectOf = (row: Row, columns: readonly string[]): string => {
    let text = '';
    let separator = '{';
    for (const column of columns) {
      const value = row[column];
      text += separator + labels.get(column)!;
      text += value === null || value === undefined ? 'null' : jsonString(value);
      separator = ',';
    }
    return text === '' ? '{}' : `${text}}`;
  };
  return (draft, lsn, xid, last) => {
    let text = keyHead;
    for (const column of context.keyColumns) text += keyPartJson(draft.row[column] ?? null);
    text += `","value":${objectOf(draft.row, draft.columns)}`;
    if (draft.oldValueColumns)
      text += `,"old_value":${objectOf(draft.before!, draft.oldValueColumns)}`;
    text += `,"headers":{"operation":"${draft.operation}"${relation},"lsn":"${lsn}"`;
    text += `,"op_position":${draft.op},"txids":[${xid}]`;
    return `${text}${last ? ',"last":true' : ''}}}`;
  };
}

/** The object path, for a subquery shape: each message gets its row's tags before it is written. */
function taggedEntries(
  context: MessageContext,
  transaction: { xid: number; commitLsn: bigint },
  drafts: Draft[],
  tagging: EntryTagging,
): LogEntry[] {
  const lsn = transaction.commitLsn.toString();
  const rows = new Map<WireChangeMessage, { row: Row; before?: Row }>();
  const entries = drafts.map((draft) => {
    const message: WireChangeMessage = {
      key: keyOf(context, draft.row),
      value: project(draft.row, draft.columns),
      ...(draft.oldValueColumns && { old_value: project(draft.before!, draft.oldValueColumns) }),
      headers: {
        operation: draft.operation,
        relation: [context.schema, context.table],
        lsn,
        op_position: draft.op,
        txids: [transaction.xid],
      },
    };
    rows.set(message, { row: draft.row, before: draft.before });
    return { offset: { tx: transaction.commitLsn, op: draft.op }, message };
  });
  const tagged = tagEntries(entries, rows, tagging);
  const last = tagged.at(-1);
  if (last && !tagging.more) last.message.headers.last = true;
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
