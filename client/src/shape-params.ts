import { PARAMS } from '@sluice/protocol';
import { ReservedParamError } from './errors.js';
import type { LogMode, Row } from './messages.js';

type SerializableParamValue = string | string[] | Record<string, string>;
/** A value, or a function returning one, called anew for every request (tokens, filters). */
type ParamValue =
  SerializableParamValue | (() => SerializableParamValue | Promise<SerializableParamValue>);

/** The parameters that define a shape (docs/protocol.md §2). */
export interface PostgresParams<T extends Row<unknown> = Row> {
  /** `items`, `schema.table`, or double-quoted identifiers that keep their case. */
  table?: string;
  /** Columns to include, primary key included; each is quoted, so any name works. */
  columns?: (keyof T & string)[];
  /** A Postgres boolean expression over the table's columns, `$1…$n` placeholders allowed. */
  where?: string;
  /** Values of the placeholders: an array (`$1` is the first) or an object keyed `"1"`, `"2"`… */
  params?: Record<`${number}`, string> | string[];
  /** `full` sends whole rows on updates and deletes, with `old_value` on updates. */
  replica?: 'default' | 'full';
  /** `changes_only` starts with an empty snapshot (the `log` option does the same). */
  log?: LogMode;
}

/** Names the stream sets itself on every request; custom params may not use them. */
const RESERVED = [
  PARAMS.offset,
  PARAMS.handle,
  PARAMS.live,
  PARAMS.cursor,
  PARAMS.cacheBuster,
] as const;

/** What applications pass as `params`: the shape's parameters plus any of their own. */
export type ExternalParamsRecord<T extends Row<unknown> = Row> = Partial<PostgresParams<T>> & {
  [key: string]: ParamValue | undefined;
} & { [K in (typeof RESERVED)[number]]?: never };

/** Request headers: values, or functions (sync or async) called for every request. */
export type ExternalHeadersRecord = Record<string, string | (() => string | Promise<string>)>;

/** Params as they go on the URL: strings, or objects that become `key[k]=v`. */
export type ResolvedParams = Record<string, string | Record<string, string>>;

export function validateParams(params: Record<string, unknown> | undefined): void {
  const reserved = Object.keys(params ?? {}).filter((key) =>
    (RESERVED as readonly string[]).includes(key),
  );
  if (reserved.length > 0) throw new ReservedParamError(reserved);
}

const quoteIdentifier = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * Resolves function values and serialises the rest: `columns` as a list of quoted names,
 * `params` arrays as `{1: …, 2: …}`, other arrays comma-joined. `log` is left out: the stream
 * sends its log mode itself.
 */
export async function resolveParams(
  params: ExternalParamsRecord | undefined,
): Promise<ResolvedParams> {
  const entries = await Promise.all(
    Object.entries(params ?? {}).map(async ([key, value]) => {
      const resolved = typeof value === 'function' ? await value() : value;
      return [key, resolved] as const;
    }),
  );
  const result: ResolvedParams = {};
  for (const [key, value] of entries) {
    if (value === undefined || key === PARAMS.log) continue;
    if (!Array.isArray(value)) result[key] = value;
    else if (key === PARAMS.columns) result[key] = value.map(quoteIdentifier).join(',');
    else if (key === PARAMS.params)
      result[key] = Object.fromEntries(value.map((v, i) => [String(i + 1), v]));
    else result[key] = value.join(',');
  }
  return result;
}

export async function resolveHeaders(
  headers: ExternalHeadersRecord | undefined,
): Promise<Record<string, string>> {
  const entries = await Promise.all(
    Object.entries(headers ?? {}).map(
      async ([key, value]) => [key, typeof value === 'function' ? await value() : value] as const,
    ),
  );
  return Object.fromEntries(entries);
}
