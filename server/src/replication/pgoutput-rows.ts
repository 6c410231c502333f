import type { Pgoutput } from 'pg-logical-replication';

/** The first byte of the pgoutput messages that carry rows. */
const INSERT = 0x49; // I
const UPDATE = 0x55; // U
const DELETE = 0x44; // D

/**
 * Whether `buffer` is an Insert, Update or Delete message: the ones `readRowMessage` reads.
 * Every other message (Begin, Commit, Relation, Truncate…) is left to the library's parser.
 */
export function isRowMessage(buffer: Buffer): boolean {
  const tag = buffer[0];
  return tag === INSERT || tag === UPDATE || tag === DELETE;
}

/**
 * Reads an Insert, Update or Delete message of pgoutput protocol version 1 (PostgreSQL's
 * "Logical Replication Message Formats") into the library's message shape, every value kept as
 * the exact text Postgres sent. This is the replication hot path: one call per changed row. The
 * library's reader decodes each value through a `TextDecoder` (which also drops a leading U+FEFF
 * from a value) and a type parser per column; this one slices each value straight to a string.
 * `relations` are the Relation messages received so far, by OID. A malformed message throws.
 */
export function readRowMessage(
  buffer: Buffer,
  relations: ReadonlyMap<number, Pgoutput.MessageRelation>,
): Pgoutput.MessageInsert | Pgoutput.MessageUpdate | Pgoutput.MessageDelete {
  const reader = new TupleReader(buffer);
  const tag = reader.uint8();
  const oid = reader.int32();
  const relation = relations.get(oid);
  if (!relation) throw new Error(`pgoutput: a row of relation ${oid}, never described`);
  const part = reader.uint8();
  if (tag === INSERT) {
    reader.expect(part, 'N');
    return { tag: 'insert', relation, new: reader.tuple(relation) };
  }
  if (tag === UPDATE) {
    let key: Record<string, unknown> | null = null;
    let old: Record<string, unknown> | null = null;
    let next = part;
    if (part === 0x4b /* K */) {
      key = keyOf(relation, reader.tuple(relation));
      next = reader.uint8();
    } else if (part === 0x4f /* O */) {
      old = reader.tuple(relation);
      next = reader.uint8();
    }
    reader.expect(next, 'N');
    return { tag: 'update', relation, key, old, new: reader.tuple(relation, old) };
  }
  if (part === 0x4b /* K */) {
    return { tag: 'delete', relation, key: keyOf(relation, reader.tuple(relation)), old: null };
  }
  reader.expect(part, 'O');
  return { tag: 'delete', relation, key: null, old: reader.tuple(relation) };
}

/**
 * A key tuple names only the replica identity's columns; the others arrive as nulls, which say
 * nothing (a key column is never null), so only the key columns are kept.
 */
function keyOf(
  relation: Pgoutput.MessageRelation,
  tuple: Record<string, unknown>,
): Record<string, unknown> {
  const key = emptyRow();
  for (const column of relation.keyColumns) key[column] = tuple[column] ?? undefined;
  return key;
}

/**
 * Rows inherit nothing (no `__proto__` setter, no `constructor`), so any column name is an
 * ordinary property. `Object.create(null)` would do that too, but makes a dictionary: filling
 * and reading one was three times slower, once per value of every replicated row. Objects made
 * by a constructor whose prototype inherits nothing keep V8's fast properties.
 */
class RowObject {}
Object.setPrototypeOf(RowObject.prototype, null);
Reflect.deleteProperty(RowObject.prototype, 'constructor');

/** A new row with no columns yet. */
export function emptyRow(): Record<string, unknown> {
  return new RowObject() as Record<string, unknown>;
}

class TupleReader {
  readonly #bytes: Buffer;
  #at = 0;

  constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  uint8(): number {
    this.#need(1);
    return this.#bytes[this.#at++]!;
  }

  int32(): number {
    this.#need(4);
    const value = this.#bytes.readInt32BE(this.#at);
    this.#at += 4;
    return value;
  }

  expect(byte: number, letter: string): void {
    if (byte !== letter.charCodeAt(0)) {
      throw new Error(`pgoutput: expected '${letter}', got byte ${byte}`);
    }
  }

  /**
   * TupleData: a column count, then per column its kind and value. An unchanged TOASTed value
   * ('u') is taken from `old` when the message carries the old row, else left undefined.
   * The row inherits nothing: a column may be called `__proto__` (`emptyRow`).
   */
  tuple(
    relation: Pgoutput.MessageRelation,
    old?: Record<string, unknown> | null,
  ): Record<string, unknown> {
    this.#need(2);
    const count = this.#bytes.readInt16BE(this.#at);
    this.#at += 2;
    const { columns } = relation;
    if (count > columns.length) {
      throw new Error(`pgoutput: ${count} values for ${columns.length} columns`);
    }
    const row = emptyRow();
    for (let i = 0; i < count; i++) {
      const name = columns[i]!.name;
      const kind = this.uint8();
      if (kind === 0x74 /* t */) {
        const start = this.#valueStart();
        row[name] = this.#bytes.toString('utf8', start, this.#at);
      } else if (kind === 0x6e /* n */) {
        row[name] = null;
      } else if (kind === 0x75 /* u */) {
        row[name] = old?.[name];
      } else if (kind === 0x62 /* b */) {
        const start = this.#valueStart();
        row[name] = this.#bytes.subarray(start, this.#at);
      } else {
        throw new Error(`pgoutput: unknown value kind ${kind}`);
      }
    }
    return row;
  }

  /** Reads a value's length and moves past the value, returning where the value starts. */
  #valueStart(): number {
    const length = this.int32();
    if (length < 0) throw new Error(`pgoutput: negative length ${length}`);
    this.#need(length);
    const start = this.#at;
    this.#at += length;
    return start;
  }

  #need(length: number): void {
    if (this.#at + length > this.#bytes.length) throw new Error('pgoutput: message cut short');
  }
}
