// The Postgres types a where clause can compute with, and the rules Postgres uses to pick the
// type of an operation over two of them. Only types whose text output the evaluator can read
// and compare exactly are here; columns of other types may still be tested with IS [NOT] NULL.

export type ScalarType =
  | 'bool'
  | 'int2'
  | 'int4'
  | 'int8'
  | 'numeric'
  | 'float4'
  | 'float8'
  | 'text'
  | 'uuid'
  | 'date'
  | 'timestamp'
  | 'timestamptz';

export interface PgType {
  scalar: ScalarType;
  array: boolean;
}

type TypeCategory = 'bool' | 'number' | 'string' | 'uuid' | 'datetime';

const CATEGORY: Record<ScalarType, TypeCategory> = {
  bool: 'bool',
  int2: 'number',
  int4: 'number',
  int8: 'number',
  numeric: 'number',
  float4: 'number',
  float8: 'number',
  text: 'string',
  uuid: 'uuid',
  date: 'datetime',
  timestamp: 'datetime',
  timestamptz: 'datetime',
};

export function categoryOf(type: ScalarType): TypeCategory {
  return CATEGORY[type];
}

export const scalar = (type: ScalarType): PgType => ({ scalar: type, array: false });
export const arrayOf = (type: ScalarType): PgType => ({ scalar: type, array: true });

export function sameType(a: PgType, b: PgType): boolean {
  return a.scalar === b.scalar && a.array === b.array;
}

export function isInteger(type: ScalarType): boolean {
  return type === 'int2' || type === 'int4' || type === 'int8';
}

export function isFloat(type: ScalarType): boolean {
  return type === 'float4' || type === 'float8';
}

/** The name Postgres accepts in a cast (`int4[]`). */
export function sqlTypeName(type: PgType): string {
  return type.array ? `${type.scalar}[]` : type.scalar;
}

/** The name Postgres uses in its messages (`integer`, `text[]`). */
export function displayTypeName(type: PgType): string {
  return type.array ? `${DISPLAY[type.scalar]}[]` : DISPLAY[type.scalar];
}

const DISPLAY: Record<ScalarType, string> = {
  bool: 'boolean',
  int2: 'smallint',
  int4: 'integer',
  int8: 'bigint',
  numeric: 'numeric',
  float4: 'real',
  float8: 'double precision',
  text: 'text',
  uuid: 'uuid',
  date: 'date',
  timestamp: 'timestamp without time zone',
  timestamptz: 'timestamp with time zone',
};

// pg_type.typname of columns (varchar and text behave the same for every supported operator),
// and the names a cast may spell (the parser turns `integer`, `double precision` and friends
// into these pg_catalog names).
const TYPE_NAMES: Record<string, ScalarType> = {
  bool: 'bool',
  boolean: 'bool',
  int2: 'int2',
  smallint: 'int2',
  int4: 'int4',
  int: 'int4',
  integer: 'int4',
  int8: 'int8',
  bigint: 'int8',
  numeric: 'numeric',
  decimal: 'numeric',
  float4: 'float4',
  real: 'float4',
  float8: 'float8',
  text: 'text',
  varchar: 'text',
  uuid: 'uuid',
  date: 'date',
  timestamp: 'timestamp',
  timestamptz: 'timestamptz',
};

/** The supported type a catalog or cast type name stands for, if any. */
export function scalarTypeNamed(name: string): ScalarType | undefined {
  return Object.hasOwn(TYPE_NAMES, name) ? TYPE_NAMES[name] : undefined;
}

const NUMBER_RANK: Partial<Record<ScalarType, number>> = {
  int2: 1,
  int4: 2,
  int8: 3,
  numeric: 4,
  float4: 5,
  float8: 6,
};

/**
 * The type two numbers are converted to before an arithmetic or comparison operator, as
 * Postgres' operator resolution picks it: integers widen to the wider integer (int2 + int2 stays
 * int2, and overflows as int2), an exact mix becomes numeric, and any float makes float8, except
 * float4 with float4 (`1::int4 + 1::float4` is double precision; float84pl is preferred).
 */
export function numberDomain(a: ScalarType, b: ScalarType): ScalarType {
  if (isInteger(a) && isInteger(b)) return NUMBER_RANK[a]! >= NUMBER_RANK[b]! ? a : b;
  if (isFloat(a) || isFloat(b)) return a === 'float4' && b === 'float4' ? 'float4' : 'float8';
  return 'numeric';
}

/** Dates and timestamps compare after date → timestamp → timestamptz promotion. */
function datetimeDomain(a: ScalarType, b: ScalarType): ScalarType {
  if (a === 'timestamptz' || b === 'timestamptz') return 'timestamptz';
  if (a === 'timestamp' || b === 'timestamp') return 'timestamp';
  return 'date';
}

/**
 * The common type of two typed operands of a comparison, or undefined when Postgres has no such
 * operator (`text = integer`).
 */
export function comparisonDomain(a: ScalarType, b: ScalarType): ScalarType | undefined {
  const category = categoryOf(a);
  if (category !== categoryOf(b)) return undefined;
  if (category === 'number') return numberDomain(a, b);
  if (category === 'datetime') return datetimeDomain(a, b);
  return a;
}

// Order of implicit conversions within a category: each converts implicitly to the later ones.
const IMPLICIT_RANK: Partial<Record<ScalarType, number>> = {
  ...NUMBER_RANK,
  date: 1,
  timestamp: 2,
  timestamptz: 3,
};

/**
 * The type values of two types are converted to when they meet in a list (IN, ARRAY[…],
 * COALESCE): select_common_type moves to the later type when it converts implicitly only one
 * way, so this is the later of the two in int2 < int4 < int8 < numeric < float4 < float8 and
 * date < timestamp < timestamptz. Unlike an operator's (numberDomain), int4 and float4 meet at
 * float4. Undefined when the categories differ.
 */
export function commonScalarType(a: ScalarType, b: ScalarType): ScalarType | undefined {
  if (categoryOf(a) !== categoryOf(b)) return undefined;
  if (a === b) return a;
  const [x, y] = [IMPLICIT_RANK[a], IMPLICIT_RANK[b]];
  if (x === undefined || y === undefined) return undefined;
  return y > x ? b : a;
}

/**
 * Whether Postgres converts `from` to `to` implicitly or by an explicit cast that the
 * evaluator reproduces exactly.
 */
export function castSupported(from: ScalarType, to: ScalarType): boolean {
  if (from === to) return true;
  const a = categoryOf(from);
  const b = categoryOf(to);
  if (a === 'number' && b === 'number') return true;
  if (a === 'datetime' && b === 'datetime') return true;
  // Text output of these is exact and cheap; float, numeric and datetime to text are not
  // reproduced (their output depends on formatting rules the evaluator does not copy).
  if (to === 'text') return isInteger(from) || from === 'uuid' || from === 'bool';
  return false;
}
