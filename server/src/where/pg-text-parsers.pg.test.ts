// Differential tests: Postgres 17 prints random values with the session settings of
// session-settings.ts, and the parsers must agree with what Postgres itself reports about them.
//
// References that do not depend on the parsers:
//   - dates: `d - date '2000-01-01'`, an exact integer;
//   - timestamps: `extract(epoch from ts - timestamp '2000-01-01')`, the interval's length as an
//     exact numeric (±Infinity for the infinities), times 10^6. Not `extract(epoch from ts)`
//     itself: past about 294246 AD its offset from 1970 overflows int64 and Postgres falls back
//     to a numeric division that rounds away the last microseconds;
//   - ordering: `<` and `=` computed by Postgres on random pairs;
//   - conversions: `d::timestamp`, `d::timestamptz` (or the error), `ts::date`, `tz::date`;
//   - arrays: `array_dims` for dimensions and bounds, `unnest ... WITH ORDINALITY` for elements.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import { sessionOptionsString } from '../pg/session-settings.js';
import { parseArrayText } from './pg-array-text.js';
import {
  DATE_NOBEGIN,
  DATE_NOEND,
  TIMESTAMP_NOBEGIN,
  TIMESTAMP_NOEND,
  compareTimestamps,
  dateToTimestamp,
  parseDateText,
  parseTimestampText,
  parseTimestamptzText,
  timestampToDate,
} from './pg-datetime-text.js';

let postgres: TestPostgres;
let db: TestDatabase;
let client: pg.Client;

// Every value as Postgres' text output, untouched by pg's type parsers.
const rawText = { getTypeParser: () => (value: string) => value };

before(async () => {
  postgres = await startPostgres();
  db = await postgres.createDatabase();
  client = new pg.Client({
    connectionString: db.url,
    options: sessionOptionsString(),
    types: rawText,
  });
  await client.connect();
  await createDatetimeTable();
});

after(async () => {
  await client?.end();
  await db?.drop();
  await postgres?.stop();
});

// A seeded generator (mulberry32), so that a failure can be reproduced.
function randomGenerator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = randomGenerator(Number(process.env.PG_TEXT_PARSERS_SEED ?? 20240517));
const randomInt = (min: number, max: number) => min + Math.floor(random() * (max - min + 1));
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
/** A uniform-enough bigint in [min, max]. */
function randomBigInt(min: bigint, max: bigint): bigint {
  const bits =
    (BigInt(Math.floor(random() * 2 ** 32)) << 32n) | BigInt(Math.floor(random() * 2 ** 32));
  return min + (bits % (max - min + 1n));
}

const DAY = 86_400_000_000n;
const MIN_DAY = -2_451_545; // 4714-11-24 BC
const DATE_LAST_DAY = 2_145_031_948; // 5874897-12-31
const TS_LAST_DAY = 106_751_982; // 294276-12-31
const MIN_TS = BigInt(MIN_DAY) * DAY;
const LAST_TS = BigInt(TS_LAST_DAY + 1) * DAY - 1n;

/** A day number, or an infinity, favouring interesting places. */
function randomDay(): number | 'infinity' | '-infinity' {
  switch (randomInt(0, 9)) {
    case 0:
      return pick([
        'infinity',
        '-infinity',
        MIN_DAY,
        MIN_DAY + 1,
        DATE_LAST_DAY,
        TS_LAST_DAY,
        TS_LAST_DAY + 1,
        0,
        -1,
      ]);
    case 1: // around the BC/AD transition (0001-01-01 is day -730119) and leap days
      return -730119 + randomInt(-800, 800);
    case 2: // around the end of February of a random year (Feb 29 of 2000 is day 59)
      return Math.floor(((randomInt(-4712, 294276) - 2000) * 146097) / 400) + 59 + randomInt(-1, 1);
    case 3:
    case 4:
      return randomInt(MIN_DAY, DATE_LAST_DAY);
    case 5:
    case 6:
      return randomInt(MIN_DAY, TS_LAST_DAY);
    default:
      return randomInt(-40000, 40000); // 1890 to 2109
  }
}

/** Microseconds since 2000, or an infinity, favouring day boundaries and short fractions. */
function randomTimestamp(): bigint | 'infinity' | '-infinity' {
  const day = () => BigInt(randomInt(MIN_DAY + 1, TS_LAST_DAY));
  switch (randomInt(0, 9)) {
    case 0:
      return pick([
        'infinity',
        '-infinity',
        MIN_TS,
        MIN_TS + 1n,
        LAST_TS,
        LAST_TS - 1n,
        0n,
        -1n,
        1n,
      ]);
    case 1: // within a microsecond or a second of midnight
      return day() * DAY + BigInt(randomInt(-1_000_001, 1_000_001));
    case 2: // fractions with few digits, whose trailing zeros Postgres drops
      return (
        day() * DAY +
        BigInt(randomInt(0, 86_399)) * 1_000_000n +
        BigInt(randomInt(0, 9) * 10 ** randomInt(0, 5))
      );
    case 3: // BC/AD transition
      return BigInt(-730119 + randomInt(-400, 400)) * DAY + BigInt(randomInt(0, 86_399_999_999));
    case 4:
    case 5:
      return randomBigInt(MIN_TS, LAST_TS);
    case 6: // whole seconds
      return day() * DAY + BigInt(randomInt(0, 86_399)) * 1_000_000n;
    default:
      return BigInt(randomInt(-40000, 40000)) * DAY + BigInt(randomInt(0, 86_399_999_999));
  }
}

const VALUE_COUNT = 3000;
// What each row of table dt was made from (days and microseconds since 2000, or infinities).
const days: string[] = [];
const stamps: string[] = [];
const zoned: string[] = [];

/** Fills table dt with random values, and the SQL helpers the tests use. */
async function createDatetimeTable(): Promise<void> {
  for (let i = 0; i < VALUE_COUNT; i++) {
    // Some repeats, so that pairs of equal values in different rows get compared.
    const repeat = i > 0 && random() < 0.05;
    days.push(repeat ? pick(days) : String(randomDay()));
    stamps.push(repeat ? pick(stamps) : String(randomTimestamp()));
    zoned.push(repeat ? pick(zoned) : String(randomTimestamp()));
  }
  // ts_of builds a timestamp from microseconds with exact interval arithmetic (whole days, then
  // microseconds); the try_ functions turn the "date out of range for timestamp" error into NULL.
  await client.query(`
    CREATE FUNCTION ts_of(us text) RETURNS timestamp LANGUAGE sql IMMUTABLE AS $$
      SELECT CASE WHEN us IN ('infinity', '-infinity') THEN us::timestamp
        ELSE timestamp '2000-01-01' + (us::int8 / 86400000000) * interval '1 day'
                                    + (us::int8 % 86400000000) * interval '1 microsecond' END $$;
    CREATE FUNCTION try_ts(d date) RETURNS text LANGUAGE plpgsql AS $$
      BEGIN RETURN d::timestamp::text; EXCEPTION WHEN datetime_field_overflow THEN RETURN NULL; END $$;
    CREATE FUNCTION try_tstz(d date) RETURNS text LANGUAGE plpgsql AS $$
      BEGIN RETURN d::timestamptz::text; EXCEPTION WHEN datetime_field_overflow THEN RETURN NULL; END $$;
    CREATE FUNCTION us_since_2000(ts timestamp) RETURNS text LANGUAGE sql IMMUTABLE AS $$
      SELECT trunc(extract(epoch FROM ts - timestamp '2000-01-01') * 1000000)::text $$;
    CREATE FUNCTION us_since_2000(tz timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
      SELECT trunc(extract(epoch FROM tz - timestamptz '2000-01-01 00:00:00+00') * 1000000)::text $$;
    CREATE TABLE dt (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz)`);
  await client.query(
    `INSERT INTO dt
     SELECT id, CASE WHEN d IN ('infinity', '-infinity') THEN d::date ELSE date '2000-01-01' + d::int4 END,
            ts_of(ts), ts_of(tz)::timestamptz
     FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS v(d, ts, tz, id)`,
    [days, stamps, zoned],
  );
}

/** us_since_2000() output as a bigint, infinities included. */
function fromMicrosRef(ref: string): bigint {
  if (ref === 'Infinity') return TIMESTAMP_NOEND;
  if (ref === '-Infinity') return TIMESTAMP_NOBEGIN;
  return BigInt(ref);
}

test('dates, timestamps and timestamptz: parsed values and conversions match Postgres', async () => {
  const { rows } = await client.query<Record<string, string | null>>(`
    SELECT id, d::text AS d, CASE WHEN isfinite(d) THEN (d - date '2000-01-01')::text
                                  ELSE extract(epoch FROM d)::text END AS d_ref,
           ts::text AS ts, us_since_2000(ts) AS ts_ref,
           tz::text AS tz, us_since_2000(tz) AS tz_ref,
           try_ts(d) AS d_ts, try_tstz(d) AS d_tz, ts::date::text AS ts_d, tz::date::text AS tz_d
    FROM dt ORDER BY id`);
  assert.equal(rows.length, VALUE_COUNT);

  const byId = new Map<number, { d: number; ts: bigint; tz: bigint }>();
  for (const [i, row] of rows.entries()) {
    const where = JSON.stringify(row);
    const d = parseDateText(row.d!);
    assert.equal(d, Number(row.d_ref), where); // Number('Infinity') is Infinity
    const ts = parseTimestampText(row.ts!);
    assert.equal(ts, fromMicrosRef(row.ts_ref!), where);
    const tz = parseTimestamptzText(row.tz!);
    assert.equal(tz, fromMicrosRef(row.tz_ref!), where);
    // And the generator made what it meant to (so the interesting cases really are covered).
    if (!days[i]!.endsWith('infinity')) assert.equal(d, Number(days[i]), where);
    if (!stamps[i]!.endsWith('infinity')) assert.equal(ts, BigInt(stamps[i]!), where);
    if (!zoned[i]!.endsWith('infinity')) assert.equal(tz, BigInt(zoned[i]!), where);
    byId.set(Number(row.id), { d, ts, tz });

    // date -> timestamp / timestamptz: Postgres' result, or its error for dates past 294276.
    if (row.d_ts === null) assert.throws(() => dateToTimestamp(d), RangeError, where);
    else assert.equal(dateToTimestamp(d), parseTimestampText(row.d_ts!), where);
    if (row.d_tz === null) assert.throws(() => dateToTimestamp(d), RangeError, where);
    else assert.equal(dateToTimestamp(d), parseTimestamptzText(row.d_tz!), where);
    // timestamp / timestamptz -> date.
    assert.equal(timestampToDate(ts), parseDateText(row.ts_d!), where);
    assert.equal(timestampToDate(tz), parseDateText(row.tz_d!), where);
  }
  assert.ok([...byId.values()].some((v) => v.d === DATE_NOEND));
  assert.ok([...byId.values()].some((v) => v.d === DATE_NOBEGIN));

  // Random pairs, and each row with itself: Postgres' < and = against compareTimestamps.
  const left: number[] = [];
  const right: number[] = [];
  for (let i = 1; i <= VALUE_COUNT; i++) {
    left.push(i, i, randomInt(1, VALUE_COUNT));
    right.push(i, randomInt(1, VALUE_COUNT), randomInt(1, VALUE_COUNT));
  }
  const pairs = await client.query<Record<string, string>>(
    `SELECT p.i, p.j, a.d < b.d AS d_lt, a.d = b.d AS d_eq, a.ts < b.ts AS ts_lt, a.ts = b.ts AS ts_eq,
            a.tz < b.tz AS tz_lt, a.tz = b.tz AS tz_eq
     FROM unnest($1::int[], $2::int[]) AS p(i, j) JOIN dt a ON a.id = p.i JOIN dt b ON b.id = p.j`,
    [left, right],
  );
  assert.equal(pairs.rows.length, left.length);
  const expected = (cmp: number) => ({ lt: cmp < 0 ? 't' : 'f', eq: cmp === 0 ? 't' : 'f' });
  let equalPairs = 0;
  for (const row of pairs.rows) {
    const a = byId.get(Number(row.i))!;
    const b = byId.get(Number(row.j))!;
    const where = JSON.stringify({ row, a: String(a.ts), b: String(b.ts) });
    const dateCmp = a.d < b.d ? -1 : a.d > b.d ? 1 : 0;
    assert.deepEqual({ lt: row.d_lt, eq: row.d_eq }, expected(dateCmp), where);
    assert.deepEqual(
      { lt: row.ts_lt, eq: row.ts_eq },
      expected(compareTimestamps(a.ts, b.ts)),
      where,
    );
    assert.deepEqual(
      { lt: row.tz_lt, eq: row.tz_eq },
      expected(compareTimestamps(a.tz, b.tz)),
      where,
    );
    if (row.i !== row.j && row.ts_eq === 't') equalPairs++;
  }
  assert.ok(equalPairs > 0, 'some pairs of distinct rows hold equal values');
});

// Sessions use TimeZone=UTC, so timestamptz output always ends in +00. This test alone switches
// zones (SET LOCAL, rolled back) to check the parsing of offsets such as -04:56:02 or +12:45.
test('timestamptz printed under other time zones (offsets with minutes and seconds)', async () => {
  const values = Array.from({ length: 1000 }, () => {
    const ts = randomTimestamp();
    // Keep away from the ends of the range, where local times would be out of range.
    return typeof ts === 'bigint' && (ts < MIN_TS + 2n * DAY || ts > LAST_TS - 2n * DAY)
      ? '0'
      : String(ts);
  });
  for (const zone of [
    'America/New_York',
    'Asia/Kolkata',
    'Europe/Amsterdam',
    'Pacific/Chatham',
    'America/St_Johns',
  ]) {
    await client.query('BEGIN');
    try {
      await client.query(`SET LOCAL TimeZone = '${zone}'`);
      const { rows } = await client.query<{ text: string; ref: string }>(
        `SELECT tz::text AS text, us_since_2000(tz) AS ref
         FROM (SELECT ts_of(v) AT TIME ZONE 'UTC' AS tz FROM unnest($1::text[]) AS v) AS t`,
        [values],
      );
      let withMinutes = 0;
      for (const row of rows) {
        assert.equal(
          parseTimestamptzText(row.text),
          fromMicrosRef(row.ref),
          `${zone}: ${row.text}`,
        );
        if (/[+-]\d\d:\d\d(:\d\d)?( BC)?$/.test(row.text)) withMinutes++;
      }
      assert.ok(withMinutes > 0, `${zone} printed some offsets with minutes`);
    } finally {
      await client.query('ROLLBACK');
    }
  }
});

// Pieces of text elements: everything that forces quoting or escaping, and some that do not.
const TEXT_PIECES = [
  'a',
  'Zz',
  '0',
  ' ',
  '"',
  '\\',
  ',',
  ';',
  '{',
  '}',
  '[1:2]',
  '=',
  "'",
  '\t',
  '\n',
  '\r',
  '\v',
  '\f',
  'é',
  '😀',
  '中文',
  'NULL',
  'null',
  '\\"',
];

function randomTextElement(): string {
  if (random() < 0.15)
    return pick(['', 'NULL', 'null', 'Null', ' NULL', 'NULL ', '""', '\\', '{}']);
  let text = '';
  for (let n = randomInt(1, 5); n > 0; n--) text += pick(TEXT_PIECES);
  return text;
}

/** An array_in literal with explicit bounds and every element quoted. */
function arrayLiteral(dims: number[], lowerBounds: number[], elements: (string | null)[]): string {
  if (dims.length === 0) return '{}';
  let next = 0;
  const level = (depth: number): string => {
    const items: string[] = [];
    for (let i = 0; i < dims[depth]!; i++) {
      if (depth + 1 < dims.length) items.push(level(depth + 1));
      else {
        const element = elements[next++]!;
        items.push(element === null ? 'NULL' : `"${element.replace(/["\\]/g, '\\$&')}"`);
      }
    }
    return `{${items.join(',')}}`;
  };
  const bounds = dims.map((dim, i) => `[${lowerBounds[i]}:${lowerBounds[i]! + dim - 1}]`).join('');
  return `${bounds}=${level(0)}`;
}

function randomArray(element: () => string): string {
  if (random() < 0.08) return '{}';
  const ndim = random() < 0.1 ? randomInt(4, 6) : randomInt(1, 3);
  const dims = Array.from({ length: ndim }, () => randomInt(1, ndim > 3 ? 2 : 4));
  const lowerBounds = dims.map((dim) =>
    random() < 0.6 ? 1 : pick([0, -1, 2, randomInt(-50, 50), -2147483648, 2147483647 - dim]),
  );
  const count = dims.reduce((a, b) => a * b, 1);
  const elements = Array.from({ length: count }, () => (random() < 0.15 ? null : element()));
  return arrayLiteral(dims, lowerBounds, elements);
}

/** array_dims output, e.g. '[0:1][1:3]', as dims and lower bounds. */
function parseDims(text: string | null): { dims: number[]; lowerBounds: number[] } {
  const bounds = [...(text ?? '').matchAll(/\[(-?\d+):(-?\d+)\]/g)].map(
    (m) => [Number(m[1]), Number(m[2])] as const,
  );
  return { dims: bounds.map(([l, u]) => u - l + 1), lowerBounds: bounds.map(([l]) => l) };
}

for (const [type, element] of [
  ['int4', () => String(randomInt(-2147483648, 2147483647))],
  ['text', randomTextElement],
] as const) {
  test(`${type}[]: dimensions, bounds and elements match array_dims and unnest`, async () => {
    const literals = Array.from({ length: 800 }, () => randomArray(element));
    const { rows } = await client.query<{
      text: string;
      dims: string | null;
      elements: string | null;
    }>(
      `SELECT a::text AS text, array_dims(a) AS dims,
              (SELECT json_agg(x::text ORDER BY o) FROM unnest(a) WITH ORDINALITY AS u(x, o)) AS elements
       FROM unnest($1::text[]) WITH ORDINALITY AS l(literal, n), LATERAL (SELECT literal::${type}[] AS a) AS c
       ORDER BY n`,
      [literals],
    );
    let quoted = 0;
    for (const row of rows) {
      const parsed = parseArrayText(row.text, (text) => text);
      const reference = {
        ...parseDims(row.dims),
        elements: JSON.parse(row.elements ?? '[]') as (string | null)[],
      };
      assert.deepEqual(parsed, reference, row.text);
      if (row.text.includes('"')) quoted++;
    }
    if (type === 'text') assert.ok(quoted > 100);
  });
}

test('arrays of dates, timestamps and timestamptz parse element by element', async () => {
  const { rows } = await client.query<Record<string, string>>(`
    SELECT array_agg(d ORDER BY id)::text AS d,
           json_agg(CASE WHEN isfinite(d) THEN (d - date '2000-01-01')::text
                         ELSE extract(epoch FROM d)::text END ORDER BY id) AS d_ref,
           array_agg(ts ORDER BY id)::text AS ts, json_agg(us_since_2000(ts) ORDER BY id) AS ts_ref,
           array_agg(tz ORDER BY id)::text AS tz, json_agg(us_since_2000(tz) ORDER BY id) AS tz_ref
    FROM dt`);
  const row = rows[0]!;
  assert.deepEqual(
    parseArrayText(row.d!, parseDateText).elements,
    (JSON.parse(row.d_ref!) as string[]).map(Number), // Number('-Infinity') is -Infinity
  );
  assert.deepEqual(
    parseArrayText(row.ts!, parseTimestampText).elements,
    (JSON.parse(row.ts_ref!) as string[]).map(fromMicrosRef),
  );
  assert.deepEqual(
    parseArrayText(row.tz!, parseTimestamptzText).elements,
    (JSON.parse(row.tz_ref!) as string[]).map(fromMicrosRef),
  );
  assert.equal(parseArrayText(row.ts!, parseTimestampText).elements.length, VALUE_COUNT);
});

test('box[] uses ";" as its delimiter', async () => {
  const { rows } = await client.query<{ text: string; elements: string }>(`
    SELECT a::text AS text, (SELECT json_agg(x::text ORDER BY o) FROM unnest(a) WITH ORDINALITY AS u(x, o)) AS elements
    FROM (SELECT '[0:1][1:2]={{(1,2),(0,0);NULL};{(3.5,-4),(1,1);(0,0),(0,0)}}'::box[] AS a) AS t`);
  const row = rows[0]!;
  assert.deepEqual(
    parseArrayText(row.text, (text) => text, ';'),
    {
      dims: [2, 2],
      lowerBounds: [0, 1],
      elements: JSON.parse(row.elements) as (string | null)[],
    },
  );
});
