import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DATE_NOBEGIN,
  DATE_NOEND,
  PgDatetimeTextError,
  TIMESTAMP_NOBEGIN,
  TIMESTAMP_NOEND,
  compareTimestamps,
  dateToTimestamp,
  isFiniteTimestamp,
  parseDateText,
  parseTimestampText,
  parseTimestamptzText,
  timestampToDate,
} from './pg-datetime-text.js';

const DAY = 86_400_000_000n;
const HOUR = 3_600_000_000n;

test('dates: days since 2000-01-01', () => {
  assert.equal(parseDateText('2000-01-01'), 0);
  assert.equal(parseDateText('2000-01-02'), 1);
  assert.equal(parseDateText('1999-12-31'), -1);
  assert.equal(parseDateText('1970-01-01'), -10957);
  assert.equal(parseDateText('2024-02-29'), 8825);
  assert.equal(parseDateText('2000-03-01'), 60); // 2000 is a leap year
});

test('dates: BC, far future, range limits and infinities', () => {
  // 44 BC is astronomical year -43 (1 BC is year 0); the reference is Postgres' own answer.
  assert.equal(parseDateText('0044-03-15 BC'), -746117);
  assert.equal(parseDateText('0001-12-31 BC') + 1, parseDateText('0001-01-01'));
  assert.equal(parseDateText('0001-02-29 BC'), parseDateText('0001-03-01 BC') - 1); // year 0 is leap
  assert.equal(parseDateText('4714-11-24 BC'), -2451545); // Julian day 0, the first date
  assert.equal(parseDateText('12345-01-01'), 3778434);
  assert.equal(parseDateText('5874897-12-31'), 2145031948); // the last date
  assert.equal(parseDateText('infinity'), Infinity);
  assert.equal(parseDateText('-infinity'), -Infinity);
  assert.equal(DATE_NOEND, Infinity);
  assert.equal(DATE_NOBEGIN, -Infinity);
});

test('timestamps: microseconds since 2000-01-01 00:00:00', () => {
  assert.equal(parseTimestampText('2000-01-01 00:00:00'), 0n);
  assert.equal(parseTimestampText('2024-01-02 03:04:05'), 8767n * DAY + 11045_000000n);
  assert.equal(parseTimestampText('2024-01-02 03:04:05.123456'), 8767n * DAY + 11045_123456n);
  assert.equal(parseTimestampText('2000-01-01 00:00:00.5'), 500000n);
  assert.equal(parseTimestampText('2000-01-01 00:00:00.000001'), 1n);
  assert.equal(parseTimestampText('1999-12-31 23:59:59.999999'), -1n);
  assert.equal(parseTimestampText('0044-03-15 10:00:00 BC'), -746117n * DAY + 10n * HOUR);
  assert.equal(parseTimestampText('4714-11-24 00:00:00 BC'), -2451545n * DAY);
  assert.equal(parseTimestampText('294276-12-31 23:59:59.999999'), 106751983n * DAY - 1n);
  assert.equal(parseTimestampText('infinity'), TIMESTAMP_NOEND);
  assert.equal(parseTimestampText('-infinity'), TIMESTAMP_NOBEGIN);
});

test('timestamptz: the offset is subtracted, BC comes after it', () => {
  assert.equal(parseTimestamptzText('2000-01-01 00:00:00+00'), 0n);
  assert.equal(parseTimestamptzText('2000-01-01 00:00:00-05'), 5n * HOUR);
  assert.equal(parseTimestamptzText('2000-01-01 05:30:00+05:30'), 0n);
  assert.equal(parseTimestamptzText('2000-01-01 00:00:00.25+05:30:15'), -19814_750000n);
  assert.equal(parseTimestamptzText('0044-03-15 10:00:00+00 BC'), -746117n * DAY + 10n * HOUR);
  assert.equal(parseTimestamptzText('0044-03-15 10:00:00.5+00 BC'), -64464472799500000n);
  // Local times just outside the range, as printed under other time zones, are fine as long as
  // the instant is within it.
  assert.equal(parseTimestamptzText('294277-01-01 05:29:59.999999+05:30'), 106751983n * DAY - 1n);
  assert.equal(parseTimestamptzText('4714-11-23 19:03:58-04:56:02 BC'), -2451545n * DAY);
  assert.equal(parseTimestamptzText('infinity'), TIMESTAMP_NOEND);
  assert.equal(parseTimestamptzText('-infinity'), TIMESTAMP_NOBEGIN);
});

test('compareTimestamps orders infinities around every finite value', () => {
  const ordered = [
    TIMESTAMP_NOBEGIN,
    parseTimestampText('4714-11-24 00:00:00 BC'),
    -1n,
    0n,
    parseTimestampText('294276-12-31 23:59:59.999999'),
    TIMESTAMP_NOEND,
  ];
  for (const [i, a] of ordered.entries()) {
    for (const [j, b] of ordered.entries()) {
      assert.equal(compareTimestamps(a, b), Math.sign(i - j));
    }
  }
  assert.equal(isFiniteTimestamp(0n), true);
  assert.equal(isFiniteTimestamp(TIMESTAMP_NOEND), false);
  assert.equal(isFiniteTimestamp(TIMESTAMP_NOBEGIN), false);
});

test('dateToTimestamp: midnight, infinities kept, no timestamp after 294276', () => {
  assert.equal(dateToTimestamp(0), 0n);
  assert.equal(dateToTimestamp(-1), -DAY);
  assert.equal(dateToTimestamp(parseDateText('0044-03-15 BC')), -746117n * DAY);
  assert.equal(dateToTimestamp(Infinity), TIMESTAMP_NOEND);
  assert.equal(dateToTimestamp(-Infinity), TIMESTAMP_NOBEGIN);
  assert.equal(dateToTimestamp(parseDateText('294276-12-31')), 106751982n * DAY);
  assert.throws(() => dateToTimestamp(parseDateText('294277-01-01')), RangeError);
  assert.throws(() => dateToTimestamp(0.5), RangeError);
});

test('timestampToDate rounds down, also before 2000', () => {
  assert.equal(timestampToDate(0n), 0);
  assert.equal(timestampToDate(DAY - 1n), 0);
  assert.equal(timestampToDate(-1n), -1);
  assert.equal(timestampToDate(-DAY), -1);
  assert.equal(timestampToDate(-DAY - 1n), -2);
  assert.equal(timestampToDate(parseTimestamptzText('0044-03-15 23:59:59.999999+00 BC')), -746117);
  assert.equal(timestampToDate(parseTimestamptzText('2000-01-01 01:00:00+05')), -1);
  assert.equal(timestampToDate(TIMESTAMP_NOEND), Infinity);
  assert.equal(timestampToDate(TIMESTAMP_NOBEGIN), -Infinity);
  assert.throws(() => timestampToDate(106751983n * DAY), RangeError);
});

test('malformed input throws PgDatetimeTextError', () => {
  const isTextError = (e: unknown) =>
    e instanceof PgDatetimeTextError &&
    e.code === 'SLUICE_DATETIME_TEXT' &&
    e.name === 'PgDatetimeTextError';
  const badDates = [
    '',
    'Infinity',
    '+infinity',
    '2000-1-01',
    '200-01-01',
    '0000-01-01',
    '2000-00-01',
    '2000-13-01',
    '2000-01-00',
    '2000-01-32',
    '2023-02-29',
    '1900-02-29',
    '0002-02-29 BC', // 2 BC is astronomical year -1, not a leap year
    '2000-01-01 bc',
    '2000-01-01  BC',
    ' 2000-01-01',
    '2000-01-01 00:00:00',
    '4714-11-23 BC',
    '5874898-01-01',
    '01/02/2000',
  ];
  for (const text of badDates) assert.throws(() => parseDateText(text), isTextError, text);
  const badTimestamps = [
    '2000-01-01',
    '2000-01-01T00:00:00',
    '2000-01-01 0:00:00',
    '2000-01-01 00:00',
    '2000-01-01 24:00:00',
    '2000-01-01 00:60:00',
    '2000-01-01 00:00:60',
    '2000-01-01 00:00:00.',
    '2000-01-01 00:00:00.1234567',
    '2000-01-01 00:00:00+00', // an offset is only valid for timestamptz
    '4714-11-23 23:59:59.999999 BC',
    '294277-01-01 00:00:00',
  ];
  for (const text of badTimestamps)
    assert.throws(() => parseTimestampText(text), isTextError, text);
  const badTimestamptzs = [
    '2000-01-01 00:00:00', // timestamptz output always has an offset
    '2000-01-01 00:00:00+0',
    '2000-01-01 00:00:00+0530',
    '2000-01-01 00:00:00 +00',
    '2000-01-01 00:00:00+16',
    '2000-01-01 00:00:00+05:60',
    '2000-01-01 00:00:00+05:00:60',
    '2000-01-01 00:00:00 BC+00',
    '4714-11-24 00:00:00+01 BC',
    '294277-01-01 00:00:00+00',
  ];
  for (const text of badTimestamptzs) {
    assert.throws(() => parseTimestamptzText(text), isTextError, text);
  }
});
