// Values of the supported types as the evaluator holds them, read from Postgres' text output,
// and the conversions and orderings Postgres applies to them. Representation per type:
// bool → boolean; int2/int4/int8 → bigint; numeric → PgNumeric; float4/float8 → number (float4
// values rounded to single precision); text and uuid → string; date → days since 2000-01-01
// (±Infinity); timestamp and timestamptz → microseconds since 2000-01-01 (bigint or ±infinity).
// SQL NULL is null.

import { parseArrayText, PgArrayTextError } from './pg-array-text.js';
import {
  PgDatetimeTextError,
  TIMESTAMP_NOEND,
  compareTimestamps,
  dateToTimestamp,
  parseDateText,
  parseTimestampText,
  parseTimestamptzText,
  timestampToDate,
} from './pg-datetime-text.js';
import {
  compareNumeric,
  float8ToNumeric,
  numericFromBigInt,
  numericToFloat4,
  numericToFloat8,
  numericToInt,
  parseNumeric,
  PgNumericError,
  type PgNumeric,
} from './pg-numeric.js';
import { isInteger, type PgType, type ScalarType } from './pg-type.js';

/** An error Postgres would raise evaluating the expression; the row then does not match. */
export class EvaluationError extends Error {
  override readonly name = 'EvaluationError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type Value = unknown;

/** Whether an error is one Postgres would raise for this value (not a bug of the evaluator). */
export function isEvaluationError(error: unknown): error is Error & { code: string } {
  return (
    error instanceof EvaluationError ||
    error instanceof PgNumericError ||
    error instanceof PgDatetimeTextError ||
    error instanceof PgArrayTextError
  );
}

const INT_RANGE: Record<string, [bigint, bigint, string]> = {
  int2: [-(2n ** 15n), 2n ** 15n - 1n, 'smallint out of range'],
  int4: [-(2n ** 31n), 2n ** 31n - 1n, 'integer out of range'],
  int8: [-(2n ** 63n), 2n ** 63n - 1n, 'bigint out of range'],
};

/** Raises Postgres' out-of-range error when `value` does not fit integer type `type`. */
export function checkInteger(type: ScalarType, value: bigint): bigint {
  const [min, max, message] = INT_RANGE[type]!;
  if (value < min || value > max) throw new EvaluationError('22003', message);
  return value;
}

function parseFloatText(text: string, single: boolean): number {
  const value =
    text === 'NaN'
      ? NaN
      : text === 'Infinity'
        ? Infinity
        : text === '-Infinity'
          ? -Infinity
          : Number(text);
  return single ? Math.fround(value) : value;
}

const SCALAR_READERS: Record<ScalarType, (text: string) => Value> = {
  bool: (text) => text === 't' || text === 'true',
  int2: (text) => BigInt(text),
  int4: (text) => BigInt(text),
  int8: (text) => BigInt(text),
  numeric: parseNumeric,
  float4: (text) => parseFloatText(text, true),
  float8: (text) => parseFloatText(text, false),
  text: (text) => text,
  uuid: (text) => text.toLowerCase(),
  date: parseDateText,
  timestamp: parseTimestampText,
  timestamptz: parseTimestamptzText,
};

/** Reads Postgres' text output of a value of `type`. */
export function valueReader(type: PgType): (text: string) => Value {
  const element = SCALAR_READERS[type.scalar];
  return type.array ? (text) => parseArrayText(text, element) : element;
}

/** Postgres' float8 comparison: NaN equals NaN and sorts above every other value. */
function compareFloats(a: number, b: number): number {
  if (Number.isNaN(a)) return Number.isNaN(b) ? 0 : 1;
  if (Number.isNaN(b)) return -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Code point order (UTF-16 order differs for characters above U+FFFF). */
function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    // A surrogate stands for a code point above every BMP character.
    if (xs !== ys) return xs ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Orders two non-null values of the same type, as Postgres' btree operators do. */
export function compareValues(type: ScalarType, a: Value, b: Value): number {
  switch (type) {
    case 'int2':
    case 'int4':
    case 'int8':
      return (a as bigint) < (b as bigint) ? -1 : (a as bigint) > (b as bigint) ? 1 : 0;
    case 'numeric':
      return compareNumeric(a as PgNumeric, b as PgNumeric);
    case 'float4':
    case 'float8':
      return compareFloats(a as number, b as number);
    case 'bool':
      return Number(a) - Number(b);
    case 'text':
      return compareCodePoints(a as string, b as string);
    case 'uuid':
      return (a as string) < (b as string) ? -1 : (a as string) > (b as string) ? 1 : 0;
    case 'date':
      return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
    case 'timestamp':
    case 'timestamptz':
      return compareTimestamps(a as never, b as never);
  }
}

/** Equality of two non-null values: text compares byte for byte (deterministic collations). */
export function equalValues(type: ScalarType, a: Value, b: Value): boolean {
  return type === 'text' ? a === b : compareValues(type, a, b) === 0;
}

function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff < 0.5) return floor;
  if (diff > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** float8 → float4, with Postgres' overflow and underflow errors. */
function toFloat4(value: number): number {
  const result = Math.fround(value);
  if (!Number.isFinite(result) && Number.isFinite(value)) {
    throw new EvaluationError('22003', 'value out of range: overflow');
  }
  if (result === 0 && value !== 0)
    throw new EvaluationError('22003', 'value out of range: underflow');
  return result;
}

const INT_BITS: Record<string, 16 | 32 | 64> = { int2: 16, int4: 32, int8: 64 };

/**
 * An integer → float4 as C converts it (i8tof): correctly rounded, half to even. Going through
 * float8 first would round twice, and differ for some int8 values above 2^53.
 */
function integerToFloat4(value: bigint): number {
  const magnitude = value < 0n ? -value : value;
  const excess = magnitude.toString(2).length - 24; // bits below a float4's 24-bit mantissa
  if (excess <= 0) return Number(value);
  const unit = 1n << BigInt(excess);
  let kept = magnitude >> BigInt(excess);
  const rest = magnitude - kept * unit;
  if (2n * rest > unit || (2n * rest === unit && kept % 2n === 1n)) kept++;
  const result = Number(kept) * 2 ** excess;
  return value < 0n ? -result : result;
}

/**
 * Runs a datetime conversion of pg-datetime-text.ts, whose range errors are RangeErrors, and
 * raises them as the errors Postgres raises (22008, datetime field overflow).
 */
function datetimeConversion<T>(convert: () => T): T {
  try {
    return convert();
  } catch (error) {
    if (error instanceof RangeError) throw new EvaluationError('22008', error.message);
    throw error;
  }
}

/**
 * date → timestamp or timestamptz inside a cross-type comparison (`date < timestamp`, IN, =
 * ANY): Postgres' date_cmp_timestamp does not convert with range checks, a date past the last
 * timestamp (294277 AD on) compares above every finite timestamp and below infinity. This value
 * sits there: the end of the timestamp range is far below TIMESTAMP_NOEND.
 */
export function dateForComparison(days: number): bigint {
  try {
    return dateToTimestamp(days);
  } catch (error) {
    if (error instanceof RangeError && days > 0) return TIMESTAMP_NOEND - 1n;
    throw error;
  }
}

/** A cast between supported types, as Postgres performs it (rounding, range errors). */
export function convertValue(from: ScalarType, to: ScalarType, value: Value): Value {
  if (from === to) return value;
  if (isInteger(from)) {
    const v = value as bigint;
    if (isInteger(to)) return checkInteger(to, v);
    if (to === 'numeric') return numericFromBigInt(v);
    if (to === 'float8') return Number(v);
    if (to === 'float4') return integerToFloat4(v);
    if (to === 'text') return v.toString();
  }
  if (from === 'numeric') {
    const v = value as PgNumeric;
    if (isInteger(to)) return numericToInt(v, INT_BITS[to]!);
    if (to === 'float8') return numericToFloat8(v);
    if (to === 'float4') return numericToFloat4(v);
  }
  if (from === 'float4' || from === 'float8') {
    const v = value as number;
    if (isInteger(to)) {
      if (!Number.isFinite(v)) throw new EvaluationError('22003', INT_RANGE[to]![2]);
      return checkInteger(to, BigInt(roundHalfEven(v)));
    }
    if (to === 'numeric') return float8ToNumeric(v, from === 'float4' ? 6 : 15);
    if (to === 'float8') return v;
    if (to === 'float4') return toFloat4(v);
  }
  if (from === 'date' && (to === 'timestamp' || to === 'timestamptz')) {
    return datetimeConversion(() => dateToTimestamp(value as number));
  }
  if ((from === 'timestamp' || from === 'timestamptz') && to === 'date') {
    return datetimeConversion(() => timestampToDate(value as never));
  }
  // timestamp and timestamptz hold the same instant under TimeZone=UTC (docs/protocol.md §4).
  if (
    (from === 'timestamp' && to === 'timestamptz') ||
    (from === 'timestamptz' && to === 'timestamp')
  ) {
    return value;
  }
  if (from === 'uuid' && to === 'text') return value;
  if (from === 'bool' && to === 'text') return value ? 'true' : 'false';
  throw new Error(`convertValue: no conversion from ${from} to ${to}`);
}
