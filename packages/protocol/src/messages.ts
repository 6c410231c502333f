/**
 * The messages of a shape log as they go on the wire (docs/protocol.md §4): a JSON array of
 * change messages (a row's key, its values as Postgres text, and headers) and control messages.
 * The server builds them; clients type the parsed values their own way.
 */

/** The names a control message carries in `headers.control`. */
export const CONTROL = {
  upToDate: 'up-to-date',
  mustRefetch: 'must-refetch',
  snapshotEnd: 'snapshot-end',
} as const;

export type ControlName = (typeof CONTROL)[keyof typeof CONTROL];

/**
 * The names an event message carries in `headers.event` (Electric 1.7's subquery shapes): rows
 * whose tags match the patterns left the shape, or came back, because of a change in another
 * table.
 */
export const EVENT = {
  moveIn: 'move-in',
  moveOut: 'move-out',
} as const;

export type EventName = (typeof EVENT)[keyof typeof EVENT];

/** The rows whose tags hold `value` in slot `pos` (the slots of a tag are `/`-separated). */
export interface MovePattern {
  pos: number;
  value: string;
}

export type Operation = 'insert' | 'update' | 'delete';

/** A row's values as Postgres text, by column name; `null` is SQL NULL. */
export type TextRow = Record<string, string | null>;

export interface ChangeHeaders {
  operation: Operation;
  /** `[schema, table]`. */
  relation: [string, string];
  /** The commit LSN (decimal) of a replicated change; absent in snapshot rows. */
  lsn?: string;
  /** The change's position in its transaction; absent in snapshot rows. */
  op_position?: number;
  txids?: number[];
  /** On the transaction's last change in this shape. */
  last?: true;
  /** Rows of a subset snapshot: its `metadata.snapshot_mark` (docs/protocol.md §3.10). */
  snapshot_mark?: number;
  /**
   * Subquery shapes: why the row is in the shape, one tag per disjunct of the where clause. A tag
   * is `/`-joined slots, one per position (condition); an empty slot is a position that disjunct
   * does not use.
   */
  tags?: string[];
  /** On an update: the tags the row no longer has. */
  removed_tags?: string[];
  /** Subquery shapes: whether each position's condition holds for the row. */
  active_conditions?: boolean[];
}

export interface WireChangeMessage {
  key: string;
  value: TextRow;
  /** With `replica=full`, an update's previous values of the columns it changed. */
  old_value?: TextRow;
  headers: ChangeHeaders;
}

export interface UpToDateMessage {
  headers: { control: typeof CONTROL.upToDate; global_last_seen_lsn?: string };
}

export interface MustRefetchMessage {
  headers: { control: typeof CONTROL.mustRefetch };
}

/** Ends the initial rows, with the Postgres snapshot they were read in (xid8 values as text). */
export interface SnapshotEndMessage {
  headers: {
    control: typeof CONTROL.snapshotEnd;
    xmin: string;
    xmax: string;
    xip_list: string[];
  };
}

export type WireControlMessage = UpToDateMessage | MustRefetchMessage | SnapshotEndMessage;

/** A move of rows in or out of a subquery shape; it names no row (no `key`). */
export interface WireEventMessage {
  headers: { event: EventName; patterns: MovePattern[]; txids?: number[] };
}

export type WireMessage = WireChangeMessage | WireControlMessage | WireEventMessage;

/**
 * The `metadata` of a subset snapshot answer (docs/protocol.md §3.10): the Postgres snapshot its
 * rows were read in (xid8 values as text), the mark its rows carry, and a WAL position past
 * every commit that snapshot sees (a decimal string).
 */
export interface SubsetSnapshotMetadata {
  xmin: string;
  xmax: string;
  xip_list: string[];
  snapshot_mark: number;
  database_lsn: string;
}
