import { ParserNullValueError } from './errors.js';
import type { GetExtensions, Message, Row, Value } from './messages.js';
import { parsePgArray } from './pg-array.js';
import type { ColumnInfo, Schema } from './schema.js';

/**
 * Turns one column's Postgres text into a value. The second argument is the column's
 * `electric-schema` entry (modifiers such as `precision` included), for parsers that need it;
 * the signature is the official client's, so one parser object serves both.
 */
export type ParseFunction<Extensions = never> = (
  value: string,
  additionalInfo?: Omit<ColumnInfo, 'type' | 'dims'>,
) => Value<Extensions>;

/** Parsers by Postgres type name (`int4`, `timestamptz`, an enum's name, …). */
export type Parser<Extensions = never> = Record<string, ParseFunction<Extensions>>;

const parseNumber = (value: string) => Number(value); // NaN, Infinity and -Infinity included
const parseBool = (value: string) => value === 'true' || value === 't';
const parseBigInt = (value: string) => BigInt(value);
const parseJson = (value: string) => JSON.parse(value) as Value;

/**
 * The types `@electric-sql/client` converts, converted the same way; every other type (numeric,
 * timestamps, uuid, bytea, enums, domains, …) stays the text Postgres printed.
 */
export const defaultParser: Parser = {
  int2: parseNumber,
  int4: parseNumber,
  int8: parseBigInt,
  float4: parseNumber,
  float8: parseNumber,
  bool: parseBool,
  json: parseJson,
  jsonb: parseJson,
};

/** Parses the values of change messages by the shape's schema, with custom parsers first. */
export class ValueParser<T extends Row<unknown> = Row> {
  readonly #parsers: Parser<GetExtensions<T>>;

  constructor(custom?: Parser<GetExtensions<T>>) {
    this.#parsers = { ...defaultParser, ...custom };
  }

  /**
   * Parses `value` and `old_value` of every change message in a response body, in place.
   * Control messages pass through unchanged.
   */
  parseMessages(messages: unknown[], schema: Schema): Message<T>[] {
    for (const message of messages as Record<string, unknown>[]) {
      for (const field of ['value', 'old_value'] as const) {
        const row = message[field];
        if (typeof row === 'object' && row !== null) {
          message[field] = this.parseRow(row as Record<string, string | null>, schema);
        }
      }
    }
    return messages as Message<T>[];
  }

  parseRow(row: Record<string, string | null>, schema: Schema): T {
    const parsed: Record<string, Value<GetExtensions<T>>> = {};
    for (const [name, text] of Object.entries(row)) {
      const column = schema[name];
      parsed[name] = column ? this.#parseValue(name, text, column) : text;
    }
    return parsed as T;
  }

  #parseValue(name: string, text: string | null, column: ColumnInfo): Value<GetExtensions<T>> {
    if (text === null) {
      if (column.not_null) throw new ParserNullValueError(name);
      return null;
    }
    const parse = this.#parsers[column.type];
    const scalar = (token: string) => (parse ? parse(token, column) : token);
    if ((column.dims ?? 0) > 0) {
      // NOT NULL constrains the array, not its elements: a NULL element stays null.
      return parsePgArray(text, (token) => (token === null ? null : scalar(token)));
    }
    return scalar(text);
  }
}
