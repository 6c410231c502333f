// Exact decimal arithmetic with the semantics of Postgres' `numeric` (utils/adt/numeric.c, as of
// Postgres 14-17): the where-clause evaluator must compute the same value, the same display scale
// and the same error as the server for every row, or a shape would hold rows Postgres excludes.
//
// A finite value is a bigint scaled by 10^-scale, where `scale` is Postgres' display scale
// (dscale): '1.50' is { digits: 150n, scale: 2 } and prints back as '1.50'. Postgres computes in
// base-10000 digits, but its +, -, * and / are exact before one final rounding (half away from
// zero), so plain bigint arithmetic reproduces them; base 10000 matters only where it leaks into
// results: the division scale (select_div_scale) and the storage limits (make_result).

export type PgNumericErrorCode = '22012' | '22003' | '22P02' | '0A000';

/**
 * An error Postgres would raise, with its SQLSTATE: 22012 division by zero, 22003 numeric value
 * out of range, 22P02 invalid text representation, and 0A000 (feature not supported), which is
 * what numeric_int2/4/8 raise for NaN and infinity ("cannot convert NaN to bigint").
 */
export class PgNumericError extends Error {
  override readonly name = 'PgNumericError';
  constructor(
    readonly code: PgNumericErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export type PgNumeric =
  | { kind: 'finite'; digits: bigint; scale: number }
  | { kind: 'nan' }
  | { kind: 'inf'; negative: boolean };

type Finite = Extract<PgNumeric, { kind: 'finite' }>;

const DEC_DIGITS = 4; // decimal digits per base-10000 digit
const NUMERIC_MIN_SIG_DIGITS = 16;
const NUMERIC_MAX_DISPLAY_SCALE = 1000; // cap of the scale division chooses
const NUMERIC_DSCALE_MAX = 0x3fff; // dscale is a 14-bit field in the stored format
const NUMERIC_WEIGHT_MAX = 32767; // weight (base-10000 exponent) is an int16

const NAN: PgNumeric = { kind: 'nan' };
const POS_INF: PgNumeric = { kind: 'inf', negative: false };
const NEG_INF: PgNumeric = { kind: 'inf', negative: true };
const ZERO: PgNumeric = { kind: 'finite', digits: 0n, scale: 0 };

const pow10Cache: bigint[] = [];
function pow10(n: number): bigint {
  if (n < 64) return (pow10Cache[n] ??= 10n ** BigInt(n));
  return 10n ** BigInt(n);
}

const abs = (x: bigint): bigint => (x < 0n ? -x : x);
const overflow = () => new PgNumericError('22003', 'value overflows numeric format');
const divisionByZero = () => new PgNumericError('22012', 'division by zero');

/**
 * Builds a finite result, failing like make_result() when Postgres could not store it: more
 * than 131072 digits before the point (weight > int16) or a dscale beyond 14 bits.
 */
function finite(digits: bigint, scale: number): PgNumeric {
  if (scale > NUMERIC_DSCALE_MAX) throw overflow();
  if (digits !== 0n) {
    const integerDigits = abs(digits).toString().length - scale;
    if (integerDigits > (NUMERIC_WEIGHT_MAX + 1) * DEC_DIGITS) throw overflow();
  }
  return { kind: 'finite', digits, scale };
}

/** Both values' digits at the larger of their scales, so they can be added or compared. */
function align(a: Finite, b: Finite): [bigint, bigint, number] {
  const scale = Math.max(a.scale, b.scale);
  return [a.digits * pow10(scale - a.scale), b.digits * pow10(scale - b.scale), scale];
}

/** q = n / d rounded half away from zero (round_var's rule), for d > 0. */
function divRound(n: bigint, d: bigint): bigint {
  const q = n / d;
  const r = abs(n % d);
  if (2n * r >= d) return n < 0n ? q - 1n : q + 1n;
  return q;
}

// Exactly numeric_out's syntax: no '+', no exponent, no leading zeros, no negative zero.
const NUMERIC_OUT = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$/;

/**
 * Parses the text Postgres prints for a numeric (numeric_out). Anything else, including
 * input-only forms numeric_in would accept ('1e5', ' 1', '+1', '.5', 'inf'), is rejected with
 * 22P02 so that a corrupted or misrouted value fails loudly instead of comparing wrongly.
 */
export function parseNumeric(text: string): PgNumeric {
  if (text === 'NaN') return NAN;
  if (text === 'Infinity') return POS_INF;
  if (text === '-Infinity') return NEG_INF;
  if (!NUMERIC_OUT.test(text) || /^-0(?:\.0+)?$/.test(text)) {
    throw new PgNumericError('22P02', `invalid input syntax for type numeric: "${text}"`);
  }
  const point = text.indexOf('.');
  const scale = point < 0 ? 0 : text.length - point - 1;
  return finite(BigInt(point < 0 ? text : text.slice(0, point) + text.slice(point + 1)), scale);
}

export function numericFromBigInt(value: bigint): PgNumeric {
  return finite(value, 0);
}

/** numeric_out: all dscale digits after the point, '-' only for nonzero negatives. */
export function formatNumeric(value: PgNumeric): string {
  if (value.kind === 'nan') return 'NaN';
  if (value.kind === 'inf') return value.negative ? '-Infinity' : 'Infinity';
  const text = abs(value.digits)
    .toString()
    .padStart(value.scale + 1, '0');
  const sign = value.digits < 0n ? '-' : '';
  if (value.scale === 0) return sign + text;
  const point = text.length - value.scale;
  return `${sign}${text.slice(0, point)}.${text.slice(point)}`;
}

/** Rank of the special values in cmp_numerics' order: -Infinity < finite < Infinity < NaN. */
function rank(v: PgNumeric): number {
  if (v.kind === 'nan') return 2;
  if (v.kind === 'inf') return v.negative ? -2 : 1;
  return 0;
}

/**
 * The btree order (cmp_numerics): NaN equals NaN and sorts above everything, so that numeric
 * has a total order; scale is ignored (1.5 = 1.50).
 */
export function compareNumeric(a: PgNumeric, b: PgNumeric): -1 | 0 | 1 {
  if (a.kind !== 'finite' || b.kind !== 'finite') return Math.sign(rank(a) - rank(b)) as -1 | 0 | 1;
  const [x, y] = align(a, b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** A string equal for two values iff compareNumeric says they are equal: trailing zeros dropped. */
export function numericEqualityKey(a: PgNumeric): string {
  if (a.kind !== 'finite') return formatNumeric(a);
  let { digits, scale } = a;
  while (scale > 0 && digits % 10n === 0n) {
    digits /= 10n;
    scale--;
  }
  return formatNumeric({ kind: 'finite', digits, scale });
}

/** -1, 0 or 1 for a non-NaN value (numeric_sign_internal). */
function signOf(v: Exclude<PgNumeric, { kind: 'nan' }>): number {
  if (v.kind === 'inf') return v.negative ? -1 : 1;
  return v.digits < 0n ? -1 : v.digits > 0n ? 1 : 0;
}

const infOfSign = (sign: number): PgNumeric => (sign < 0 ? NEG_INF : POS_INF);

export function negateNumeric(a: PgNumeric): PgNumeric {
  if (a.kind === 'nan') return a;
  if (a.kind === 'inf') return infOfSign(a.negative ? 1 : -1);
  return { kind: 'finite', digits: -a.digits, scale: a.scale };
}

/** numeric_add: Inf + -Inf is NaN; the result keeps the larger dscale. */
export function addNumeric(a: PgNumeric, b: PgNumeric): PgNumeric {
  if (a.kind === 'nan' || b.kind === 'nan') return NAN;
  if (a.kind === 'inf') return b.kind === 'inf' && b.negative !== a.negative ? NAN : a;
  if (b.kind === 'inf') return b;
  const [x, y, scale] = align(a, b);
  return finite(x + y, scale);
}

/** numeric_sub: Inf - Inf is NaN. */
export function subNumeric(a: PgNumeric, b: PgNumeric): PgNumeric {
  return addNumeric(a, negateNumeric(b));
}

/**
 * numeric_mul: the exact product, dscale1 + dscale2, except that a dscale beyond what the
 * storage format holds (16383) is rounded down to it. 0 * Inf is NaN.
 */
export function mulNumeric(a: PgNumeric, b: PgNumeric): PgNumeric {
  if (a.kind === 'nan' || b.kind === 'nan') return NAN;
  if (a.kind === 'inf' || b.kind === 'inf') {
    const sign = signOf(a) * signOf(b);
    return sign === 0 ? NAN : infOfSign(sign);
  }
  let digits = a.digits * b.digits;
  let scale = a.scale + b.scale;
  if (scale > NUMERIC_DSCALE_MAX) {
    digits = divRound(digits, pow10(scale - NUMERIC_DSCALE_MAX));
    scale = NUMERIC_DSCALE_MAX;
  }
  return finite(digits, scale);
}

/** Weight and value of the leading nonzero base-10000 digit; (0, 0) for zero. */
function leadingNbaseDigit(v: Finite): { weight: number; first: bigint } {
  const magnitude = abs(v.digits);
  if (magnitude === 0n) return { weight: 0, first: 0n };
  const decimalExponent = magnitude.toString().length - 1 - v.scale;
  const weight = Math.floor(decimalExponent / DEC_DIGITS);
  // Decimal digits of `magnitude` below the leading base-10000 digit (negative: it needs zeros).
  const below = v.scale + weight * DEC_DIGITS;
  const first = below >= 0 ? magnitude / pow10(below) : magnitude * pow10(-below);
  return { weight, first };
}

/**
 * select_div_scale: enough fractional digits for NUMERIC_MIN_SIG_DIGITS significant digits,
 * estimated from the base-10000 weights and leading digits (which is why 1/3 gets 20 digits but
 * 10/4 gets 16), never less than either input's dscale, at most 1000.
 */
function divisionScale(a: Finite, b: Finite): number {
  const x = leadingNbaseDigit(a);
  const y = leadingNbaseDigit(b);
  let qweight = x.weight - y.weight;
  if (x.first <= y.first) qweight--;
  const rscale = Math.max(NUMERIC_MIN_SIG_DIGITS - qweight * DEC_DIGITS, a.scale, b.scale, 0);
  return Math.min(rscale, NUMERIC_MAX_DISPLAY_SCALE);
}

/**
 * numeric_div: the quotient correctly rounded (half away from zero) at select_div_scale's scale.
 * NaN wins over everything, even a zero divisor; +-Inf / 0 is division by zero; Inf / Inf is
 * NaN; finite / Inf is 0.
 */
export function divNumeric(a: PgNumeric, b: PgNumeric): PgNumeric {
  if (a.kind === 'nan' || b.kind === 'nan') return NAN;
  if (a.kind === 'inf') {
    if (b.kind === 'inf') return NAN;
    const sign = signOf(b);
    if (sign === 0) throw divisionByZero();
    return infOfSign(a.negative ? -sign : sign);
  }
  if (b.kind === 'inf') return ZERO;
  if (b.digits === 0n) throw divisionByZero();
  const rscale = divisionScale(a, b);
  // a/b * 10^rscale = a.digits * 10^(b.scale + rscale) / (b.digits * 10^a.scale)
  let numerator = a.digits * pow10(b.scale + rscale);
  let denominator = b.digits * pow10(a.scale);
  if (denominator < 0n) {
    numerator = -numerator;
    denominator = -denominator;
  }
  return finite(divRound(numerator, denominator), rscale);
}

/**
 * numeric_mod: a - trunc(a/b) * b, so the result has the sign of a and the larger dscale.
 * Following fmod(): Inf % x is NaN (but Inf % 0 is division by zero), x % Inf is x unchanged.
 */
export function modNumeric(a: PgNumeric, b: PgNumeric): PgNumeric {
  if (a.kind === 'nan' || b.kind === 'nan') return NAN;
  if (a.kind === 'inf') {
    if (signOf(b) === 0) throw divisionByZero();
    return NAN;
  }
  if (b.kind === 'inf') return a;
  if (b.digits === 0n) throw divisionByZero();
  const [x, y, scale] = align(a, b);
  return finite(x % y, scale); // bigint % truncates toward zero, like div_var(..., false)
}

/**
 * numeric::float8 goes through the text form and float8in, i.e. strtod: correctly rounded (as is
 * Number()), and 22003 when the value overflows or underflows to zero (denormals are fine).
 */
export function numericToFloat8(a: PgNumeric): number {
  if (a.kind === 'nan') return NaN;
  if (a.kind === 'inf') return a.negative ? -Infinity : Infinity;
  const text = formatNumeric(a);
  const value = Number(text);
  if (!Number.isFinite(value) || (value === 0 && a.digits !== 0n)) {
    throw new PgNumericError('22003', `"${text}" is out of range for type double precision`);
  }
  return value;
}

const FLOAT4_MAX = 3.4028234663852886e38;
const FLOAT4_BITS = new DataView(new ArrayBuffer(4));

/** The float4 next to a positive float4 `x`, upwards or downwards (2^128 above the largest). */
function adjacentFloat4(x: number, up: boolean): number {
  if (up && x === FLOAT4_MAX) return 2 ** 128;
  FLOAT4_BITS.setFloat32(0, x);
  FLOAT4_BITS.setUint32(0, FLOAT4_BITS.getUint32(0) + (up ? 1 : -1));
  return FLOAT4_BITS.getFloat32(0);
}

/**
 * numeric::float4 goes through the text form and float4in, i.e. strtof: the decimal value
 * correctly rounded to single precision, and 22003 when that overflows or underflows to zero.
 * Rounding to float8 first and then to float4 is not the same: when the float8 lands exactly
 * halfway between two float4s, the second rounding goes to even whatever side the decimal
 * value lies on. The exact value then decides.
 */
export function numericToFloat4(a: PgNumeric): number {
  if (a.kind === 'nan') return NaN;
  if (a.kind === 'inf') return a.negative ? -Infinity : Infinity;
  if (a.digits === 0n) return 0;
  const text = formatNumeric(a);
  const magnitude = Math.abs(Number(text));
  let result = Math.fround(magnitude);
  if (result !== magnitude && Number.isFinite(magnitude)) {
    const [low, high] =
      result < magnitude
        ? [result, adjacentFloat4(result, true)]
        : result === Infinity
          ? [FLOAT4_MAX, 2 ** 128]
          : [adjacentFloat4(result, false), result];
    const midpoint = (low + high) / 2; // exact: one bit more than a float4 holds
    if (magnitude === midpoint) {
      const exact = exactDecimal(midpoint);
      const side = compareNumeric(
        { kind: 'finite', digits: abs(a.digits), scale: a.scale },
        { kind: 'finite', ...exact },
      );
      if (side !== 0) result = Math.fround(side > 0 ? high : low);
    }
  }
  if (!Number.isFinite(result) || result === 0) {
    throw new PgNumericError('22003', `"${text}" is out of range for type real`);
  }
  return a.digits < 0n ? -result : result;
}

const INT_TYPES = {
  16: { name: 'smallint', max: 2n ** 15n - 1n },
  32: { name: 'integer', max: 2n ** 31n - 1n },
  64: { name: 'bigint', max: 2n ** 63n - 1n },
} as const;

/**
 * numeric::int2/int4/int8: rounded half away from zero, 22003 when out of range. NaN and
 * infinity fail with 0A000 (feature not supported), not 22003: that is what Postgres raises.
 */
export function numericToInt(a: PgNumeric, bits: 16 | 32 | 64): bigint {
  const type = INT_TYPES[bits];
  if (a.kind !== 'finite') {
    const what = a.kind === 'nan' ? 'NaN' : 'infinity';
    throw new PgNumericError('0A000', `cannot convert ${what} to ${type.name}`);
  }
  const value = divRound(a.digits, pow10(a.scale));
  if (value > type.max || value < -type.max - 1n) {
    throw new PgNumericError('22003', `${type.name} out of range`);
  }
  return value;
}

/** The exact value of a finite double as digits / 10^scale (every double is a dyadic fraction). */
function exactDecimal(x: number): { digits: bigint; scale: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const bits = view.getBigUint64(0);
  const biased = Number(bits >> 52n);
  const fraction = bits & ((1n << 52n) - 1n);
  const mantissa = biased === 0 ? fraction : fraction | (1n << 52n);
  const exponent = (biased === 0 ? 1 : biased) - 1075; // x = mantissa * 2^exponent
  if (exponent >= 0) return { digits: mantissa << BigInt(exponent), scale: 0 };
  return { digits: mantissa * 5n ** BigInt(-exponent), scale: -exponent };
}

/**
 * float8::numeric (significantDigits 15, DBL_DIG) and float4::numeric (6, FLT_DIG; pass the
 * float4 value, e.g. Math.fround(x)). Postgres prints the float with "%.*g" and parses that text:
 * the value is rounded to that many significant digits, half to even on the exact binary value as
 * glibc's printf does (toPrecision would round ties up), and the dscale is what the "%g" text
 * shows after it drops trailing zeros: 1e20 -> '100000000000000000000', 1.5e-7 -> '0.00000015'.
 */
export function float8ToNumeric(x: number, significantDigits: 15 | 6): PgNumeric {
  if (Number.isNaN(x)) return NAN;
  if (!Number.isFinite(x)) return infOfSign(x);
  if (x === 0) return ZERO;
  const exact = exactDecimal(x);
  let kept = exact.digits;
  let dropped = Math.max(0, kept.toString().length - significantDigits);
  if (dropped > 0) {
    const unit = pow10(dropped);
    const rest = kept % unit;
    kept /= unit;
    const twice = 2n * rest;
    if (twice > unit || (twice === unit && kept % 2n === 1n)) kept++;
  }
  while (kept % 10n === 0n) {
    kept /= 10n;
    dropped++;
  }
  // value = kept * 10^(dropped - exact.scale); the "%g" text shows exact.scale - dropped decimals.
  const scale = Math.max(0, exact.scale - dropped);
  const digits = kept * pow10(Math.max(0, dropped - exact.scale));
  return finite(x < 0 ? -digits : digits, scale);
}
