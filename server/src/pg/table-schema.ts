// A table's columns as pg_catalog describes them, and the `electric-schema` header built from
// them (docs/protocol.md §5).
//
// The header follows Electric, read in electric-sql/electric at dc07a1e6 (2026-08-21):
// packages/sync-service/lib/electric/schema.ex (`from_column_info/2`, `add_modifier/2`) over the
// column query in lib/electric/postgres/inspector/direct_inspector.ex (`@column_info_query_base`):
//   - `type` is pg_type.typname; for arrays the element's typname (`int4` for int4[]). Domains,
//     enums and composites are reported under their own typname (a domain is NOT resolved to its
//     base type), so the official client parses them as plain strings;
//   - `dims` is pg_attribute.attndims, present only when non-zero;
//   - `pk_index` is array_position(pg_index.indkey, attnum): indkey is an int2vector, whose
//     subscripts start at 0, so the first key column has pk_index 0;
//   - `not_null` is attnotnull, present only when true;
//   - modifiers come from atttypmod, judged by the reported `type` (so varchar(20)[] has
//     max_length 20): varchar/text → max_length = typmod-4; bpchar → length = typmod-4 (not
//     max_length); bit/varbit → length = typmod; interval → fields ("DAY TO SECOND") and
//     precision; time/timetz/timestamp/timestamptz/date with typmod > 0 → precision = typmod;
//     numeric → precision and scale; any other type with typmod >= 0 → the raw type_mod.
// Deliberate differences:
//   - an array column whose attndims is 0 (CREATE TABLE AS, some ALTERs and tools produce these)
//     is reported by Electric as type `_int4` without dims, which the client cannot parse as an
//     array; here every true array type gets dims >= 1 and its element type;
//   - numeric scale is decoded as Postgres does (11-bit signed since PG 15, so numeric(5,-2) has
//     scale -2) where Electric reads 16 bits and would report 2046;
//   - non-ASCII characters in the header JSON are written as \u escapes: Node refuses to send
//     other header characters above U+00FF, and fetch() would read raw UTF-8 bytes as Latin-1.
// Electric's JSON key order differs (Erlang sorts small map keys); the client does not care.

import type pg from 'pg';
import type { TableIdentifier } from './table-identifier.js';

export type TypeKind = 'base' | 'composite' | 'domain' | 'enum' | 'pseudo' | 'range' | 'multirange';

/** Type modifiers as they appear in `electric-schema`. */
export interface TypeModifiers {
  max_length?: number;
  length?: number;
  precision?: number;
  scale?: number;
  fields?: string;
  type_mod?: number;
}

export interface ColumnSchema {
  name: string;
  attnum: number;
  /** pg_attribute.atttypid: for arrays the array type itself (e.g. the oid of `_int4`). */
  typeOid: number;
  /** For arrays the element type's oid, else equal to typeOid. */
  elementTypeOid: number;
  /** pg_type.typname, of the element type for arrays (`int4` for int4[]). */
  typname: string;
  /** The kind of `typname`'s type (for arrays, of the element type). */
  typeKind: TypeKind;
  /** format_type(): `character varying(20)[]`, for messages and SQL casts. */
  formattedType: string;
  /** pg_attribute.atttypmod (-1 when none). */
  typmod: number;
  /** Array dimensions: 0 for non-arrays, at least 1 for arrays. */
  dims: number;
  notNull: boolean;
  /** Position in the primary key (0-based), or undefined for non-key columns. */
  pkIndex: number | undefined;
  /** A generated (stored or virtual) column. */
  generated: boolean;
  modifiers: TypeModifiers;
}

export interface TableSchema {
  oid: number;
  schema: string;
  name: string;
  kind: 'table' | 'partitioned_table';
  /** In attnum order, without dropped and system columns. */
  columns: ColumnSchema[];
  /** Primary key column names in key order; empty when the table has none. */
  primaryKey: string[];
  hasPrimaryKey: boolean;
}

/** One column's entry in the `electric-schema` header. */
export interface ColumnSchemaHeader extends TypeModifiers {
  type: string;
  dims?: number;
  pk_index?: number;
  not_null?: true;
}

interface ColumnRow {
  oid: string;
  relkind: string;
  attnum: number | null;
  attname: string | null;
  atttypid: string | null;
  atttypmod: number | null;
  attndims: number | null;
  attnotnull: boolean | null;
  generated: boolean | null;
  typname: string | null;
  typtype: string | null;
  elem_oid: string | null;
  elem_typname: string | null;
  elem_typtype: string | null;
  formatted_type: string | null;
  pk_position: number | null;
}

// One round trip. LEFT JOIN pg_attribute so that a table without columns still returns a row.
// An array is recognised by its element naming it as its array type (elem.typarray): that leaves
// out int2vector, oidvector, name, point and friends, which have a typelem but are not arrays.
const COLUMNS_SQL = `
SELECT c.oid::int8::text AS oid,
       c.relkind::text AS relkind,
       a.attnum::int4 AS attnum,
       a.attname::text AS attname,
       a.atttypid::int8::text AS atttypid,
       a.atttypmod::int4 AS atttypmod,
       a.attndims::int4 AS attndims,
       a.attnotnull AS attnotnull,
       a.attgenerated <> '' AS generated,
       t.typname::text AS typname,
       t.typtype::text AS typtype,
       e.oid::int8::text AS elem_oid,
       e.typname::text AS elem_typname,
       e.typtype::text AS elem_typtype,
       format_type(a.atttypid, a.atttypmod) AS formatted_type,
       array_position(i.indkey, a.attnum)::int4 AS pk_position
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attribute a
         ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND e.typarray = t.oid
  LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary
 WHERE n.nspname = $1 AND c.relname = $2
 ORDER BY a.attnum`;

const TYPE_KINDS: Record<string, TypeKind> = {
  b: 'base',
  c: 'composite',
  d: 'domain',
  e: 'enum',
  p: 'pseudo',
  r: 'range',
  m: 'multirange',
};

/**
 * Reads a table's columns from pg_catalog. Undefined when there is no such table; views,
 * materialized views, foreign tables and sequences count as "no such table", as in Electric
 * (only relkind r and p can be shapes).
 */
export async function loadTableSchema(
  client: pg.ClientBase | pg.Pool,
  table: TableIdentifier,
): Promise<TableSchema | undefined> {
  const { rows } = await (client as pg.ClientBase).query<ColumnRow>(COLUMNS_SQL, [
    table.schema,
    table.name,
  ]);
  const first = rows[0];
  if (first === undefined) return undefined;
  if (first.relkind !== 'r' && first.relkind !== 'p') return undefined;

  const columns: ColumnSchema[] = [];
  for (const row of rows) {
    if (row.attnum === null) continue; // a table without columns
    columns.push(columnFromRow(row));
  }
  const primaryKey = columns
    .filter((column) => column.pkIndex !== undefined)
    .sort((a, b) => a.pkIndex! - b.pkIndex!)
    .map((column) => column.name);
  return {
    oid: Number(first.oid),
    schema: table.schema,
    name: table.name,
    kind: first.relkind === 'p' ? 'partitioned_table' : 'table',
    columns,
    primaryKey,
    hasPrimaryKey: primaryKey.length > 0,
  };
}

function columnFromRow(row: ColumnRow): ColumnSchema {
  const isArray = row.elem_oid !== null;
  const typname = (isArray ? row.elem_typname : row.typname) ?? '';
  const typtype = (isArray ? row.elem_typtype : row.typtype) ?? 'b';
  const typmod = row.atttypmod ?? -1;
  return {
    name: row.attname ?? '',
    attnum: row.attnum ?? 0,
    typeOid: Number(row.atttypid),
    elementTypeOid: Number(isArray ? row.elem_oid : row.atttypid),
    typname,
    typeKind: TYPE_KINDS[typtype] ?? 'base',
    formattedType: row.formatted_type ?? '',
    typmod,
    dims: isArray ? Math.max(row.attndims ?? 0, 1) : 0,
    notNull: row.attnotnull === true,
    pkIndex: row.pk_position ?? undefined,
    generated: row.generated === true,
    modifiers: typeModifiers(typname, typmod),
  };
}

const TIME_TYPES = new Set(['date', 'time', 'timetz', 'timestamp', 'timestamptz']);

// Interval typmod: range bits in the high 16 bits, precision in the low 16 (timestamp.h);
// an all-ones field means "not given".
const INTERVAL_FULL_RANGE = 0x7fff;
const INTERVAL_FULL_PRECISION = 0xffff;
const INTERVAL_UNITS: readonly [string, number][] = [
  ['YEAR', 1 << 2],
  ['MONTH', 1 << 1],
  ['DAY', 1 << 3],
  ['HOUR', 1 << 10],
  ['MINUTE', 1 << 11],
  ['SECOND', 1 << 12],
];

/** Electric's modifiers for a column of type `typname` (element type for arrays). */
export function typeModifiers(typname: string, typmod: number): TypeModifiers {
  if ((typname === 'varchar' || typname === 'text') && typmod > 0) {
    return { max_length: typmod - 4 };
  }
  if (typname === 'bpchar' && typmod > 0) return { length: typmod - 4 };
  if (typname === 'bit' || typname === 'varbit') return { length: typmod };
  if (typname === 'interval' && typmod > -1) {
    const range = (typmod >>> 16) & 0xffff;
    const precision = typmod & 0xffff;
    const modifiers: TypeModifiers = {};
    if (range !== INTERVAL_FULL_RANGE) {
      const units = INTERVAL_UNITS.filter(([, mask]) => (range & mask) !== 0).map(([unit]) => unit);
      if (units.length === 1) modifiers.fields = units[0]!;
      else if (units.length > 1) modifiers.fields = `${units[0]!} TO ${units[units.length - 1]!}`;
    }
    if (precision !== INTERVAL_FULL_PRECISION) modifiers.precision = precision;
    return modifiers;
  }
  if (TIME_TYPES.has(typname) && typmod > 0) return { precision: typmod };
  if (typname === 'numeric' && typmod > -1) {
    const packed = typmod - 4;
    // scale is 11 bits, sign-extended (numeric.c, NUMERIC_TYPMOD_SCALE)
    const scale = ((packed & 0x7ff) ^ 1024) - 1024;
    return { precision: (packed >> 16) & 0xffff, scale };
  }
  if (typmod > -1) return { type_mod: typmod };
  return {};
}

/** One column's `electric-schema` entry. */
export function columnSchemaHeader(column: ColumnSchema): ColumnSchemaHeader {
  const entry: ColumnSchemaHeader = { type: column.typname };
  if (column.dims > 0) entry.dims = column.dims;
  if (column.pkIndex !== undefined) entry.pk_index = column.pkIndex;
  if (column.notNull) entry.not_null = true;
  return Object.assign(entry, column.modifiers);
}

/**
 * The `electric-schema` header value: a JSON object of the selected columns (all when
 * `columns` is omitted) in table order. Throws if a selected column does not exist.
 */
export function buildSchemaHeader(schema: TableSchema, columns?: readonly string[]): string {
  let selected = schema.columns;
  if (columns !== undefined) {
    const wanted = new Set(columns);
    selected = schema.columns.filter((column) => wanted.has(column.name));
    if (selected.length !== wanted.size) {
      const known = new Set(schema.columns.map((column) => column.name));
      const missing = columns.filter((name) => !known.has(name));
      throw new Error(
        `buildSchemaHeader: no column ${missing.map((name) => JSON.stringify(name)).join(', ')} in ${schema.schema}.${schema.name}`,
      );
    }
  }
  // No prototype: a column may be called __proto__.
  const header = Object.create(null) as Record<string, ColumnSchemaHeader>;
  for (const column of selected) header[column.name] = columnSchemaHeader(column);
  return asciiJson(JSON.stringify(header));
}

function asciiJson(json: string): string {
  return json.replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
