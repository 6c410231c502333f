/**
 * The messages a shape stream delivers (docs/protocol.md §4), typed the way `@electric-sql/client`
 * types them so that code written against either client compiles against both. The operations
 * and control names are the protocol package's; the values here are parsed, not wire text.
 */
import type { ControlName, EventName, MovePattern, Operation } from '@sluice/protocol';

export type { EventName, MovePattern, Operation };

/** Why a row is in a subquery shape: `/`-joined slots, one per position (see `move-tags.ts`). */
export type MoveTag = string;

/** A parsed column value; `Extensions` are the types custom parsers add. */
export type Value<Extensions = never> =
  | string
  | number
  | boolean
  | bigint
  | null
  | Extensions
  | Value<Extensions>[]
  | { [key: string]: Value<Extensions> };

export type Row<Extensions = never> = Record<string, Value<Extensions>>;

/** The extensions of a row type (`never` for plain rows). */
export type GetExtensions<T> = [T] extends [Row<never>]
  ? never
  : [T] extends [Row<infer E>]
    ? E
    : never;

/** A position in a shape's log as the server names it; the client stores and echoes it. */
export type Offset = '-1' | 'now' | `${number}_${number}` | `${bigint}_${number}` | `${bigint}_inf`;

/** `full` (snapshot, then changes) or `changes_only` (changes from now on). */
export type LogMode = 'full' | 'changes_only';

interface Header {
  [key: string]: Value;
}

export interface ChangeMessage<T extends Row<unknown> = Row> {
  key: string;
  value: T;
  /** With `replica: 'full'`, the previous values of an update's changed columns. */
  old_value?: Partial<T>;
  headers: Header & {
    operation: Operation;
    txids?: number[];
    /** Subquery shapes only: one tag per disjunct of the where clause. */
    tags?: MoveTag[];
    /** On an update: tags the row no longer has. */
    removed_tags?: MoveTag[];
    /** Subquery shapes only: whether each position's condition holds for the row. */
    active_conditions?: boolean[];
  };
}

export interface ControlMessage {
  headers: Header & {
    control: ControlName;
    global_last_seen_lsn?: string;
  };
}

/**
 * Rows of a subquery shape moved out (or back in) because of a change in another table. It names
 * no row: the rows are the ones whose tags match a pattern.
 */
export interface EventMessage {
  headers: Header & {
    event: EventName;
    patterns: MovePattern[];
    txids?: number[];
  };
}

export type Message<T extends Row<unknown> = Row> =
  ChangeMessage<T> | ControlMessage | EventMessage;

export function isChangeMessage<T extends Row<unknown> = Row>(
  message: Message<T>,
): message is ChangeMessage<T> {
  return 'key' in message;
}

export function isControlMessage<T extends Row<unknown> = Row>(
  message: Message<T>,
): message is ControlMessage {
  return !('key' in message) && 'control' in message.headers;
}

export function isEventMessage<T extends Row<unknown> = Row>(
  message: Message<T>,
): message is EventMessage {
  return !('key' in message) && 'event' in message.headers;
}
