// Parsers for the text output of date, timestamp and timestamptz under the session settings of
// session-settings.ts (DateStyle=ISO, TimeZone=UTC), so that the where-clause evaluator can
// compare and convert these values exactly as Postgres does.
//
// Representations (chosen so that plain `<`, `===` and `>` order values as Postgres does):
//   - date: a number, whole days since 2000-01-01 (Postgres' epoch, which is also how a date is
//     stored); 'infinity' and '-infinity' are Infinity and -Infinity (DATE_NOEND, DATE_NOBEGIN).
//   - timestamp and timestamptz: a bigint, microseconds since 2000-01-01 00:00:00 (UTC for
//     timestamptz), again Postgres' own storage. Like Postgres, the infinities are the extreme
//     int64 values (TIMESTAMP_NOBEGIN = -2^63, TIMESTAMP_NOEND = 2^63 - 1), so comparisons need
//     no special case. Do arithmetic only on values for which isFiniteTimestamp() holds.
//
// The calendar is the proleptic Gregorian one, with astronomical year numbering internally: the
// output year 1 BC is year 0 and 44 BC is -43 (Postgres' date2j/j2date make the same choice).
// Valid ranges are Postgres': dates from 4714-11-24 BC to 5874897-12-31, timestamps from
// 4714-11-24 00:00:00 BC to 294276-12-31 23:59:59.999999 (UTC for timestamptz).
//
// The formats, from EncodeDateOnly/EncodeDateTime (datetime.c) with USE_ISO_DATES:
//   date         YYYY-MM-DD[ BC]                       e.g. 0044-03-15 BC, 12345-01-01
//   timestamp    YYYY-MM-DD HH:MM:SS[.f{1,6}][ BC]      trailing zeros of the fraction dropped
//   timestamptz  as timestamp, then +HH[:MM[:SS]] before the BC: 0044-03-15 10:00:00+00 BC
// The year has at least four digits (zero-padded) and is never 0. Under TimeZone=UTC the offset
// is always +00, but any offset is accepted (the value is converted to UTC) so that text printed
// under another TimeZone still compares correctly.

export class PgDatetimeTextError extends Error {
  override readonly name = 'PgDatetimeTextError';
  readonly code = 'SLUICE_DATETIME_TEXT';

  constructor(message: string) {
    super(message);
  }
}

export const DATE_NOBEGIN = Number.NEGATIVE_INFINITY;
export const DATE_NOEND = Number.POSITIVE_INFINITY;
export const TIMESTAMP_NOBEGIN = -(2n ** 63n);
export const TIMESTAMP_NOEND = 2n ** 63n - 1n;

const USECS_PER_DAY = 86_400_000_000n;
/** 4714-11-24 BC (Julian day 0), the first valid date and the first day of a valid timestamp. */
const MIN_DAY = -2_451_545;
/** 5874898-01-01 (Postgres' DATE_END_JULIAN): the first day past the valid dates. */
const DATE_END_DAY = 2_145_031_949;
/** 294277-01-01 (TIMESTAMP_END_JULIAN): the first day past the valid timestamps. */
const TIMESTAMP_END_DAY = 106_751_983;
const MIN_TIMESTAMP = BigInt(MIN_DAY) * USECS_PER_DAY;
const END_TIMESTAMP = BigInt(TIMESTAMP_END_DAY) * USECS_PER_DAY;
/** Postgres rejects UTC offsets of 16 hours or more (MAX_TZDISP_HOUR). */
const MAX_OFFSET_HOUR = 15;

const DATE_RE = /^(\d{4,7})-(\d\d)-(\d\d)( BC)?$/;
// Groups: year, month, day, hour, minute, second, fraction, offset sign, hours, minutes,
// seconds, BC. Years have at most 6 digits: the last valid timestamp is in 294276.
const TIMESTAMP_RE =
  /^(\d{4,6})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::(\d\d)(?::(\d\d))?)?)?( BC)?$/;

/** Parses date output: days since 2000-01-01, or ±Infinity. */
export function parseDateText(text: string): number {
  if (text === 'infinity') return DATE_NOEND;
  if (text === '-infinity') return DATE_NOBEGIN;
  const m = DATE_RE.exec(text);
  if (m === null) fail('date', text);
  const days = civilToDays(m[1]!, m[2]!, m[3]!, m[4] !== undefined, 'date', text);
  if (days < MIN_DAY || days >= DATE_END_DAY) fail('date', text, 'out of range');
  return days;
}

/** Parses timestamp (without time zone) output: microseconds since 2000-01-01 00:00:00. */
export function parseTimestampText(text: string): bigint {
  return parseTimestampLike(text, false);
}

/** Parses timestamptz output: microseconds since 2000-01-01 00:00:00 UTC. */
export function parseTimestamptzText(text: string): bigint {
  return parseTimestampLike(text, true);
}

function parseTimestampLike(text: string, withZone: boolean): bigint {
  const type = withZone ? 'timestamptz' : 'timestamp';
  if (text === 'infinity') return TIMESTAMP_NOEND;
  if (text === '-infinity') return TIMESTAMP_NOBEGIN;
  const m = TIMESTAMP_RE.exec(text);
  // timestamp output never has an offset, timestamptz output always has one.
  if (m === null || (m[8] !== undefined) !== withZone) fail(type, text);
  const days = civilToDays(m[1]!, m[2]!, m[3]!, m[12] !== undefined, type, text);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = Number(m[6]);
  // Output never shows 24:00:00 or a leap second 60: both are normalised on input.
  if (hour > 23 || minute > 59 || second > 59) fail(type, text, 'time field out of range');
  // Whole microseconds of the day: at most 86,399,999,999, exact as a number.
  let micros = ((hour * 60 + minute) * 60 + second) * 1_000_000;
  if (m[7] !== undefined) micros += Number(m[7].padEnd(6, '0'));
  if (withZone) {
    const offsetHour = Number(m[9]);
    const offsetMinute = Number(m[10] ?? 0);
    const offsetSecond = Number(m[11] ?? 0);
    if (offsetHour > MAX_OFFSET_HOUR || offsetMinute > 59 || offsetSecond > 59) {
      fail(type, text, 'time zone offset out of range');
    }
    // "+05:30" means local time is 5h30 ahead of UTC, so UTC = local - offset. The local date
    // itself may lie just outside the valid range (e.g. 294277-01-01 05:29:59.999999+05:30):
    // only the UTC instant has to be valid.
    const offset = ((offsetHour * 60 + offsetMinute) * 60 + offsetSecond) * 1_000_000;
    micros -= m[8] === '-' ? -offset : offset;
  }
  const result = BigInt(days) * USECS_PER_DAY + BigInt(micros);
  if (result < MIN_TIMESTAMP || result >= END_TIMESTAMP) fail(type, text, 'out of range');
  return result;
}

/** Orders two timestamps (or two timestamptz values) as Postgres does, infinities included. */
export function compareTimestamps(a: bigint, b: bigint): -1 | 0 | 1 {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** False for the infinities. */
export function isFiniteTimestamp(ts: bigint): boolean {
  return ts !== TIMESTAMP_NOBEGIN && ts !== TIMESTAMP_NOEND;
}

/**
 * date::timestamp, and date::timestamptz under TimeZone=UTC: midnight at the start of the day.
 * Throws a RangeError, like Postgres' "date out of range for timestamp", for dates from
 * 294277-01-01 on, which have no timestamp.
 */
export function dateToTimestamp(days: number): bigint {
  if (days === DATE_NOBEGIN) return TIMESTAMP_NOBEGIN;
  if (days === DATE_NOEND) return TIMESTAMP_NOEND;
  if (!Number.isInteger(days) || days < MIN_DAY || days >= DATE_END_DAY) {
    throw new RangeError(`not a valid date: ${days}`);
  }
  if (days >= TIMESTAMP_END_DAY) throw new RangeError('date out of range for timestamp');
  return BigInt(days) * USECS_PER_DAY;
}

/**
 * timestamp::date, and timestamptz::date under TimeZone=UTC: the day containing the instant.
 * This rounds towards minus infinity (Postgres' timestamp2tm does the same): one microsecond
 * before 2000-01-01 is on day -1, while bigint division would truncate it to day 0.
 */
export function timestampToDate(ts: bigint): number {
  if (ts === TIMESTAMP_NOBEGIN) return DATE_NOBEGIN;
  if (ts === TIMESTAMP_NOEND) return DATE_NOEND;
  if (ts < MIN_TIMESTAMP || ts >= END_TIMESTAMP) throw new RangeError('timestamp out of range');
  const days = ts / USECS_PER_DAY;
  return Number(ts % USECS_PER_DAY < 0n ? days - 1n : days);
}

/**
 * Validates the printed year (with its BC flag), month and day, and returns days since
 * 2000-01-01. The range is not checked here: callers check the final value.
 */
function civilToDays(
  yearText: string,
  monthText: string,
  dayText: string,
  bc: boolean,
  type: string,
  text: string,
): number {
  const printedYear = Number(yearText);
  const month = Number(monthText);
  const day = Number(dayText);
  // There is no year 0: 1 BC is followed by AD 1.
  if (printedYear === 0 || month < 1 || month > 12 || day < 1) {
    fail(type, text, 'field out of range');
  }
  const year = bc ? 1 - printedYear : printedYear;
  if (day > daysInMonth(year, month)) fail(type, text, 'field out of range');

  // Count years from March 1st, so that the leap day is the last day of a counted year, and
  // split them into 400-year eras of exactly 146,097 days (the Gregorian cycle). Every step
  // uses floor division, so this holds for negative years as well.
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400; // 0..399
  const monthFromMarch = (month + 9) % 12; // March 0, ..., February 11
  // Days before the month: the 153-days-per-5-months pattern of March..July and August..December.
  const dayOfYear = Math.floor((153 * monthFromMarch + 2) / 5) + day - 1;
  const dayOfEra =
    yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  // 730,425 days separate 0000-03-01 (day 0 of era 0) and 2000-01-01.
  return era * 146_097 + dayOfEra - 730_425;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) {
    const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
    return leap ? 29 : 28;
  }
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

function fail(type: string, text: string, reason?: string): never {
  const excerpt = text.length > 80 ? `${text.slice(0, 77)}...` : text;
  const detail = reason === undefined ? '' : ` (${reason})`;
  throw new PgDatetimeTextError(`malformed ${type} text${detail}: ${JSON.stringify(excerpt)}`);
}
