// Differential test: every operation of pg-numeric.ts against a real Postgres, on thousands of
// generated operands. The text outputs (and SQLSTATEs, when Postgres raises) must be identical.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import {
  PgNumericError,
  addNumeric,
  compareNumeric,
  divNumeric,
  float8ToNumeric,
  formatNumeric,
  modNumeric,
  mulNumeric,
  negateNumeric,
  numericEqualityKey,
  numericToFloat8,
  numericToInt,
  parseNumeric,
  subNumeric,
  type PgNumeric,
} from './pg-numeric.js';

let postgres: TestPostgres;
let db: TestDatabase;
let client: pg.Client;

before(async () => {
  postgres = await startPostgres();
  db = await postgres.createDatabase();
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
  // One exception block per operation, so that an error in one column (division by zero, an
  // out-of-range cast) shows up as its SQLSTATE instead of failing the whole batch.
  await client.query(`
    CREATE FUNCTION numeric_try(op text, a text, b text) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN
      RETURN CASE op
        WHEN 'in' THEN a::numeric::text
        WHEN 'neg' THEN (-(a::numeric))::text
        WHEN '+' THEN (a::numeric + b::numeric)::text
        WHEN '-' THEN (a::numeric - b::numeric)::text
        WHEN '*' THEN (a::numeric * b::numeric)::text
        WHEN '/' THEN (a::numeric / b::numeric)::text
        WHEN '%' THEN (a::numeric % b::numeric)::text
        WHEN '<' THEN (a::numeric < b::numeric)::text
        WHEN '=' THEN (a::numeric = b::numeric)::text
        WHEN '>' THEN (a::numeric > b::numeric)::text
        WHEN 'float8' THEN a::numeric::float8::text
        WHEN 'int2' THEN a::numeric::int2::text
        WHEN 'int4' THEN a::numeric::int4::text
        WHEN 'int8' THEN a::numeric::int8::text
        WHEN 'float8::numeric' THEN a::float8::numeric::text
        WHEN 'float4::numeric' THEN a::float4::numeric::text
      END;
    EXCEPTION WHEN others THEN
      RETURN 'ERROR ' || SQLSTATE;
    END $$`);
});

after(async () => {
  await client?.end();
  await db?.drop();
  await postgres?.stop();
});

/** What our module answers for one operation, in the same text form numeric_try returns. */
type Ours = (a: string, b: string) => string;

const num = (f: (a: PgNumeric, b: PgNumeric) => PgNumeric): Ours => {
  return (a, b) => formatNumeric(f(parseNumeric(a), parseNumeric(b)));
};
const compares = (want: (c: number) => boolean): Ours => {
  return (a, b) => String(want(compareNumeric(parseNumeric(a), parseNumeric(b))));
};
const toInt =
  (bits: 16 | 32 | 64): Ours =>
  (a) =>
    String(numericToInt(parseNumeric(a), bits));

const NUMERIC_OPS: Record<string, Ours> = {
  in: (a) => formatNumeric(parseNumeric(a)),
  neg: (a) => formatNumeric(negateNumeric(parseNumeric(a))),
  '+': num(addNumeric),
  '-': num(subNumeric),
  '*': num(mulNumeric),
  '/': num(divNumeric),
  '%': num(modNumeric),
  '<': compares((c) => c < 0),
  '=': compares((c) => c === 0),
  '>': compares((c) => c > 0),
  // float8 text differs in style (Postgres prints 1e+20), so both sides compare as numbers.
  float8: (a) => String(numericToFloat8(parseNumeric(a))),
  int2: toInt(16),
  int4: toInt(32),
  int8: toInt(64),
};

const UNARY = new Set([
  'in',
  'neg',
  'float8',
  'int2',
  'int4',
  'int8',
  'float8::numeric',
  'float4::numeric',
]);

const FLOAT_OPS: Record<string, Ours> = {
  'float8::numeric': (a) => formatNumeric(float8ToNumeric(Number(a), 15)),
  'float4::numeric': (a) => formatNumeric(float8ToNumeric(Math.fround(Number(a)), 6)),
};

function ours(op: Ours, a: string, b: string): string {
  try {
    return op(a, b);
  } catch (error) {
    if (error instanceof PgNumericError) return `ERROR ${error.code}`;
    throw error;
  }
}

const show = (text: string) =>
  text.length > 60 ? `${text.slice(0, 40)}…(${text.length} chars)` : text;

/**
 * Runs every op on every pair in one query per batch and returns the mismatches, each naming
 * the operation and its operands. Also checks numericEqualityKey against Postgres' `=`.
 */
async function compareWithPostgres(
  ops: Record<string, Ours>,
  pairs: [string, string][],
): Promise<{ compared: number; mismatches: string[] }> {
  const names = Object.keys(ops);
  const columns = names.map((name, i) => `numeric_try($${i + 3}, t.a, t.b) AS c${i}`).join(', ');
  const sql = `SELECT ${columns} FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(a, b, i)
               ORDER BY t.i`;
  const mismatches: string[] = [];
  let compared = 0;
  for (let start = 0; start < pairs.length; start += 500) {
    const batch = pairs.slice(start, start + 500);
    const { rows } = await client.query<Record<string, string>>(sql, [
      batch.map(([a]) => a),
      batch.map(([, b]) => b),
      ...names,
    ]);
    assert.equal(rows.length, batch.length);
    batch.forEach(([a, b], row) => {
      names.forEach((name, i) => {
        let theirs = rows[row]![`c${i}`]!;
        if (name === 'float8' && !theirs.startsWith('ERROR')) theirs = String(Number(theirs));
        const mine = ours(ops[name]!, a, b);
        compared++;
        if (mine !== theirs) {
          const operands = UNARY.has(name) ? show(a) : `${show(a)}, ${show(b)}`;
          mismatches.push(`${name}(${operands}): postgres ${show(theirs)}, ours ${show(mine)}`);
        }
      });
      const pgEqual = names.includes('=') ? rows[row]![`c${names.indexOf('=')}`] : undefined;
      if (pgEqual === 'true' || pgEqual === 'false') {
        const key = (text: string) => ours((t) => numericEqualityKey(parseNumeric(t)), text, '');
        const keysEqual = key(a) === key(b);
        compared++;
        if (String(keysEqual) !== pgEqual) {
          mismatches.push(
            `numericEqualityKey(${show(a)}) vs (${show(b)}): postgres = is ${pgEqual}`,
          );
        }
      }
    });
  }
  return { compared, mismatches };
}

/** mulberry32: a tiny seeded generator, so that a failing run can be reproduced. */
function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const digits = (n: number) => Array.from({ length: n }, () => String(int(10))).join('');
  return { next, int, digits, pick: <T>(items: readonly T[]): T => items[int(items.length)]! };
}

const SEED = Number(process.env.PG_NUMERIC_SEED ?? 20240917);

const SPECIAL_VALUES = [
  'NaN',
  'Infinity',
  '-Infinity',
  '0',
  '0.00',
  '1',
  '-1',
  '0.0001',
  '-0.0001',
  '0.5',
  '-2.5',
  '1.50',
  '3',
  '-7',
  '9999',
  '10000',
  '0.9999',
  '32767.5',
  '-32768.5',
  '2147483647.49',
  '9223372036854775807',
  '9223372036854775807.5',
  '-9223372036854775808.5',
  '123456789012345678901234567890.123',
  '0.000000000000000000000000000001',
];

/** A canonical numeric_out text from one of several shapes of value. */
function randomNumeric(g: ReturnType<typeof generator>): string {
  const sign = g.next() < 0.4 ? -1n : 1n;
  let digits: bigint;
  let scale: number;
  switch (g.int(7)) {
    case 0: // small integer
      digits = BigInt(g.int(201) - 100);
      scale = 0;
      break;
    case 1: // short decimal
      digits = BigInt(g.digits(1 + g.int(6)));
      scale = g.int(5);
      break;
    case 2: // long fraction, tiny value
      digits = BigInt(g.digits(1 + g.int(30)));
      scale = 10 + g.int(50);
      break;
    case 3: // big value
      digits = BigInt(g.digits(20 + g.int(60)));
      scale = g.int(4);
      break;
    case 4: // trailing zeros kept in the display scale
      digits = BigInt(g.digits(1 + g.int(8))) * 10n ** BigInt(g.int(6));
      scale = g.int(10);
      break;
    case 5: // near a power of 10000, where the base-10000 weight changes
      digits = 10n ** BigInt(g.int(24)) + BigInt(g.int(3) - 1);
      scale = g.int(12);
      break;
    default:
      return g.pick(SPECIAL_VALUES);
  }
  return formatNumeric({ kind: 'finite', digits: sign * digits, scale });
}

test('numeric arithmetic, comparison and casts agree with Postgres', async () => {
  const g = generator(SEED);
  const pairs: [string, string][] = [];
  for (const a of SPECIAL_VALUES) for (const b of SPECIAL_VALUES) pairs.push([a, b]);
  for (let i = 0; i < 4000; i++) pairs.push([randomNumeric(g), randomNumeric(g)]);
  // Same value at different scales, and exact multiples, so = and % see their interesting cases.
  for (let i = 0; i < 300; i++) {
    const a = randomNumeric(g);
    const parsed = parseNumeric(a);
    if (parsed.kind !== 'finite') continue;
    const padded = formatNumeric({
      ...parsed,
      digits: parsed.digits * 1000n,
      scale: parsed.scale + 3,
    });
    pairs.push(
      [a, padded],
      [formatNumeric(mulNumeric(parsed, parseNumeric(String(g.int(50) - 25)))), a],
    );
  }
  const { compared, mismatches } = await compareWithPostgres(NUMERIC_OPS, pairs);
  console.log(`pg-numeric: ${pairs.length} pairs, ${compared} results compared (seed ${SEED})`);
  assert.deepEqual(mismatches.slice(0, 30), [], `${mismatches.length} mismatches (seed ${SEED})`);
});

test('results at the limits of the numeric format agree with Postgres', async () => {
  const zeros = (n: number) => '0'.repeat(n);
  const pairs: [string, string][] = [
    ['9'.repeat(131072), '1'], // + overflows 131072 digits before the point
    ['1' + zeros(131071), '0.1'], // * stays, / overflows
    ['1' + zeros(131071), '-1' + zeros(131071)],
    [`0.${zeros(8999)}5`, `0.${zeros(7383)}1`], // product dscale 16384 is rounded to 16383
    [`0.${zeros(8999)}4`, `0.${zeros(7383)}1`],
    [`0.${zeros(16382)}1`, '3'], // largest dscale
    [`0.${zeros(16383)}1`, '1'], // dscale 16384 does not parse
    ['1' + zeros(400), '1'], // float8 overflow
    [`0.${zeros(400)}1`, '1'], // float8 underflow
    [`0.${zeros(320)}1`, '7'], // float8 denormal
    ['1', `0.${zeros(1499)}1`], // division scale capped at 1000
    [`0.${zeros(1200)}3`, '7'],
  ];
  const { compared, mismatches } = await compareWithPostgres(NUMERIC_OPS, pairs);
  assert.ok(compared > 100);
  assert.deepEqual(mismatches, []);
});

test('float8::numeric and float4::numeric agree with Postgres', async () => {
  const g = generator(SEED + 1);
  const view = new DataView(new ArrayBuffer(8));
  const values: number[] = [0, -0, NaN, Infinity, -Infinity, 0.1, 1e20, 1.5e-7, 5e-324];
  values.push(Number.MAX_VALUE, -Number.MIN_VALUE, 2 ** 53, 123456789012.3125, 1000000000000005);
  for (let i = 0; i < 1500; i++) {
    switch (g.int(5)) {
      case 0: // any bit pattern: huge, tiny, denormal
        view.setUint32(0, g.int(2 ** 32));
        view.setUint32(4, g.int(2 ** 32));
        values.push(view.getFloat64(0));
        break;
      case 1: // a short decimal literal
        values.push(Number(`${g.int(2) ? '-' : ''}${g.digits(1 + g.int(8))}e${g.int(40) - 20}`));
        break;
      case 2: // a dyadic value whose expansion may end exactly on a rounding tie
        values.push((g.int(2 ** 26) * 2 ** 27 + g.int(2 ** 27)) / 2 ** g.int(12));
        break;
      case 3: // a 16-digit integer ending in 5: a tie at 15 digits
        values.push(Number(`${1 + g.int(8)}${g.digits(14)}5`));
        break;
      default: // a float4 bit pattern
        view.setUint32(0, g.int(2 ** 32));
        values.push(view.getFloat32(0));
    }
  }
  // String(x) is the shortest text that reads back as x, so Postgres starts from the same double.
  const { compared, mismatches } = await compareWithPostgres(
    { 'float8::numeric': FLOAT_OPS['float8::numeric']! },
    values.map((x) => [String(x), '0']),
  );
  // float4: pass the float4 value itself, so both sides start from the same float4.
  const float4Pairs = values
    .map((x) => Math.fround(x))
    .map((x): [string, string] => [String(x), '0']);
  const f4 = await compareWithPostgres(
    { 'float4::numeric': FLOAT_OPS['float4::numeric']! },
    float4Pairs,
  );
  console.log(`pg-numeric: ${compared + f4.compared} float conversions compared (seed ${SEED})`);
  assert.deepEqual([...mismatches, ...f4.mismatches].slice(0, 30), [], `seed ${SEED}`);
});
