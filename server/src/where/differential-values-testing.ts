// Seeded random rows for the where-clause differential test (where-differential.pg.test.ts):
// the values of every supported type, edge values first, as Postgres text input.

import type { ScalarType } from './pg-type.js';

// ---------------------------------------------------------------------------------------------
// Seeded randomness (mulberry32), so that a failure can be reproduced from its seed.

export class Random {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
  weighted<T>(choices: readonly (readonly [number, T])[]): T {
    const total = choices.reduce((sum, [weight]) => sum + weight, 0);
    let roll = this.next() * total;
    for (const [weight, choice] of choices) {
      roll -= weight;
      if (roll < 0) return choice;
    }
    return choices.at(-1)![1];
  }
  bigint(bits: number): bigint {
    let value = 0n;
    for (let i = 0; i < bits; i += 16) value = (value << 16n) | BigInt(this.int(0, 0xffff));
    return value & ((1n << BigInt(bits)) - 1n);
  }
  digits(count: number): string {
    let text = '';
    for (let i = 0; i < count; i++) text += String(this.int(0, 9));
    return text;
  }
}

// ---------------------------------------------------------------------------------------------
// Values, as Postgres input text. Rows and clause constants draw from the same pools, so that
// equality and ordering tests often meet equal values.

/** The generator's types are exactly the ones the evaluator supports. */
export type Scalar = ScalarType;

const EDGES: Record<Scalar, readonly string[]> = {
  bool: ['t', 'f'],
  int2: ['0', '1', '-1', '2', '7', '100', '-100', '255', '32767', '-32768', '181'],
  int4: [
    '0',
    '1',
    '-1',
    '7',
    '100',
    '46341',
    '65536',
    '-65536',
    '16777217',
    '2147483647',
    '-2147483648',
  ],
  int8: [
    '0',
    '1',
    '-1',
    '7',
    '2147483647',
    '2147483648',
    '-2147483649',
    '4294967296',
    '9007199254740991',
    '9007199254740992',
    '9007199254740993',
    '-9007199254740993',
    '1152921573326323713', // 2^60 + 2^36 + 1: rounds differently via float8 than to float4
    '9223372036854775807',
    '-9223372036854775808',
  ],
  numeric: [
    '0',
    '1',
    '-1',
    '7',
    '1.5',
    '-1.5',
    '1.50',
    '0.1',
    '0.10000000000000000001',
    '-0.0',
    '0.000000000000000000001',
    '123456789012345678901234567890.123456789012345678901234567890',
    '9999999999999999999999',
    '2147483647.5',
    '32767.49',
    '1.00000005960464477539062500000001', // just above a float4 midpoint
    '1e-30',
    '1e400',
    'NaN',
    'Infinity',
    '-Infinity',
  ],
  float4: [
    '0',
    '-0',
    '1',
    '-1',
    '1.5',
    '0.1',
    '0.5',
    '2.5',
    '16777216',
    '16777217',
    '2147483647',
    '3.4028235e38',
    '-3.4028235e38',
    '1e-45',
    '1.17549435e-38',
    'NaN',
    'Infinity',
    '-Infinity',
  ],
  float8: [
    '0',
    '-0',
    '1',
    '-1',
    '1.5',
    '0.1',
    '0.30000000000000004',
    '0.5',
    '2.5',
    '-2.5',
    '32767.5',
    '2147483647.5',
    '9007199254740993',
    '9.223372036854776e18',
    '1e300',
    '-1e300',
    '1e-300',
    '1.7976931348623157e308',
    '2.2250738585072014e-308',
    '5e-324',
    'NaN',
    'Infinity',
    '-Infinity',
  ],
  text: [
    '',
    'a',
    'abc',
    'ABC',
    'Abc',
    '%',
    '_',
    'a%',
    '%a',
    'a_c',
    '\\',
    'a\\b',
    '\\%',
    "it's",
    '"q"',
    'é',
    'É',
    'İ',
    'ı',
    'i',
    'I',
    'ß',
    'ẞ',
    'SS',
    'Σ',
    'σς',
    'ǅ',
    'ﬁ',
    'ᾳ',
    'ΩK',
    'ſ',
    '𐐀𐐨',
    '😀',
    'a😀b',
    'naïve',
    'Straße',
    'NULL',
    ' ',
    'a b',
    '123',
    '-5',
    'x',
  ],
  uuid: [
    '00000000-0000-0000-0000-000000000000',
    'ffffffff-ffff-ffff-ffff-ffffffffffff',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12',
    '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13}',
    'a0eebc999c0b4ef8bb6d6bb9bd380a14',
  ],
  date: [
    '2000-01-01',
    '1999-12-31',
    '2024-02-29',
    '2024-03-01',
    '1970-01-01',
    '0001-01-01',
    '0001-12-31 BC',
    '0044-03-15 BC',
    '4714-11-24 BC',
    '10000-01-01',
    '294276-12-31',
    '294277-01-01',
    '5874897-12-31',
    'infinity',
    '-infinity',
  ],
  timestamp: [
    '2000-01-01 00:00:00',
    '1999-12-31 23:59:59.999999',
    '2000-01-01 00:00:00.000001',
    '2024-02-29 12:34:56.789012',
    '2024-03-01 00:00:00',
    '1970-01-01 00:00:00',
    '0001-01-01 00:00:00',
    '0044-03-15 12:00:00 BC',
    '4714-11-24 00:00:00 BC',
    '294276-12-31 23:59:59.999999',
    'infinity',
    '-infinity',
  ],
  timestamptz: [
    '2000-01-01 00:00:00+00',
    '1999-12-31 23:59:59.999999+00',
    '2024-02-29 12:34:56.789012+00',
    '2024-02-29 12:34:56.789012+05:30',
    '2024-03-01 00:00:00-08',
    '1970-01-01 00:00:00+00',
    '0044-03-15 12:00:00+00 BC',
    '4714-11-24 00:00:00+00 BC',
    '294276-12-31 23:59:59.999999+00',
    'infinity',
    '-infinity',
  ],
};

const TEXT_ALPHABET = [...'aabcAB%_\\\'" éİıßΣσ😀1-xǅᾳǈΩKſ𐐀ﬀﬁẞµÿ'];
const pad = (n: number, width: number) => String(n).padStart(width, '0');

function randomText(r: Random, maxLength = 8): string {
  let text = '';
  for (let i = r.int(0, maxLength); i > 0; i--) text += r.pick(TEXT_ALPHABET);
  return text;
}

/** YYYY-MM-DD[ BC] for an astronomical year (0 is 1 BC). */
function dateText(year: number, month: number, day: number): string {
  const bc = year <= 0;
  return `${pad(bc ? 1 - year : year, 4)}-${pad(month, 2)}-${pad(day, 2)}${bc ? ' BC' : ''}`;
}

function randomDateParts(r: Random): [number, number, number] {
  const year = r.weighted([
    [6, () => r.int(1900, 2100)],
    [2, () => r.int(1, 9999)],
    [1, () => r.int(-4000, 0)],
    [1, () => r.int(10000, 290000)],
  ])();
  return [year, r.int(1, 12), r.int(1, 28)];
}

function randomTime(r: Random): string {
  const fraction = r.chance(0.5) ? `.${r.digits(r.int(1, 6))}` : '';
  return `${pad(r.int(0, 23), 2)}:${pad(r.int(0, 59), 2)}:${pad(r.int(0, 59), 2)}${fraction}`;
}

/** A timestamp text; `zone` adds an offset (before the BC, where Postgres prints it). */
export function randomTimestamp(r: Random, zone: boolean): string {
  const [year, month, day] = randomDateParts(r);
  const date = dateText(year, month, day);
  const offset = zone ? r.pick(['+00', '+00', '+05:30', '-08', '+14']) : '';
  const time = `${date.replace(' BC', '')} ${randomTime(r)}${offset}`;
  return year <= 0 ? `${time} BC` : time;
}

function randomFloat8(r: Random): string {
  return r.weighted([
    [3, () => String(r.int(-1000, 1000))],
    [3, () => String((r.next() - 0.5) * 10 ** r.int(-8, 25))],
    [1, () => String(r.int(-20, 20) / 4)],
    [
      1,
      () => {
        const view = new DataView(new ArrayBuffer(8));
        view.setUint32(0, r.int(0, 0xffffffff));
        view.setUint32(4, r.int(0, 0xffffffff));
        const x = view.getFloat64(0);
        return Number.isFinite(x) ? String(x) : '1e308';
      },
    ],
  ])();
}

function randomFloat4(r: Random): string {
  return r.weighted([
    [3, () => String(r.int(-1000, 1000))],
    [3, () => String(Math.fround((r.next() - 0.5) * 10 ** r.int(-6, 12)))],
    [
      1,
      () => {
        const view = new DataView(new ArrayBuffer(4));
        view.setUint32(0, r.int(0, 0xffffffff));
        const x = view.getFloat32(0);
        return Number.isFinite(x) ? String(x) : '3e38';
      },
    ],
  ])();
}

export function randomNumeric(r: Random): string {
  const sign = r.chance(0.3) ? '-' : '';
  const whole = r.chance(0.3)
    ? '0'
    : r.digits(
        r.weighted([
          [5, r.int(1, 6)],
          [1, r.int(7, 30)],
        ]),
      );
  const fraction = r.chance(0.4) ? '' : `.${r.digits(r.int(1, r.chance(0.8) ? 6 : 40))}`;
  return `${sign}${whole.replace(/^0+(?=\d)/, '')}${fraction}`;
}

function randomUuid(r: Random): string {
  let hex = '';
  for (let i = 0; i < 32; i++) hex += r.pick([...'0123456789abcdef']);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const RANDOM: Record<Scalar, (r: Random) => string> = {
  bool: (r) => r.pick(['t', 'f']),
  int2: (r) => String(r.chance(0.7) ? r.int(-200, 200) : r.int(-32768, 32767)),
  int4: (r) => String(r.chance(0.6) ? r.int(-1000, 1000) : r.int(-2147483648, 2147483647)),
  int8: (r) =>
    r.weighted([
      [3, () => String(r.int(-1000, 1000))],
      [2, () => String(r.bigint(63) - (r.chance(0.5) ? 2n ** 62n : 0n))],
      [1, () => String(r.bigint(r.int(20, 55)))],
    ])(),
  numeric: randomNumeric,
  float4: randomFloat4,
  float8: randomFloat8,
  text: (r) => randomText(r),
  uuid: randomUuid,
  date: (r) => dateText(...randomDateParts(r)),
  timestamp: (r) => randomTimestamp(r, false),
  timestamptz: (r) => randomTimestamp(r, true),
};

/** A non-null value of `type` as input text: an edge value or a random one. */
export function valueText(r: Random, type: Scalar): string {
  return r.chance(0.45) ? r.pick(EDGES[type]) : RANDOM[type](r);
}

/** Array input text, every element quoted so any element text is safe. */
function arrayText(elements: (string | null)[], lowerBound = 1): string {
  const body = elements
    .map((e) => (e === null ? 'NULL' : `"${e.replace(/[\\"]/g, (c) => `\\${c}`)}"`))
    .join(',');
  const bounds =
    lowerBound === 1 || elements.length === 0
      ? ''
      : `[${lowerBound}:${lowerBound + elements.length - 1}]=`;
  return `${bounds}{${body}}`;
}

export function randomArrayText(
  r: Random,
  element: Scalar,
  value: (r: Random) => string = (r) => valueText(r, element),
): string {
  if (r.chance(0.05) && element === 'int4') {
    return `{{${valueText(r, 'int4')},${valueText(r, 'int4')}},{${valueText(r, 'int4')},NULL}}`;
  }
  const elements: (string | null)[] = [];
  for (
    let i = r.weighted([
      [1, 0],
      [6, r.int(1, 3)],
      [1, r.int(4, 6)],
    ]);
    i > 0;
    i--
  ) {
    elements.push(r.chance(0.15) ? null : value(r));
  }
  return arrayText(elements, r.chance(0.1) ? r.int(-2, 3) : 1);
}

// ---------------------------------------------------------------------------------------------
// The table.

export interface Column {
  name: string;
  sqlType: string;
  value: (r: Random) => string | null;
}

const varchar20 = (r: Random) => [...valueText(r, 'text')].slice(0, 20).join('');

const nullable =
  (p: number, value: (r: Random) => string) =>
  (r: Random): string | null =>
    r.chance(p) ? null : value(r);

export const COLUMNS: Column[] = [
  { name: 'i2', sqlType: 'int2', value: nullable(0.12, (r) => valueText(r, 'int2')) },
  { name: 'i4', sqlType: 'int4', value: nullable(0.12, (r) => valueText(r, 'int4')) },
  { name: 'i8', sqlType: 'int8', value: nullable(0.12, (r) => valueText(r, 'int8')) },
  { name: 'num', sqlType: 'numeric', value: nullable(0.12, (r) => valueText(r, 'numeric')) },
  { name: 'f4', sqlType: 'float4', value: nullable(0.12, (r) => valueText(r, 'float4')) },
  { name: 'f8', sqlType: 'float8', value: nullable(0.12, (r) => valueText(r, 'float8')) },
  { name: 'txt', sqlType: 'text', value: nullable(0.12, (r) => valueText(r, 'text')) },
  {
    name: 'vc',
    sqlType: 'varchar(20)',
    value: nullable(0.12, varchar20),
  },
  { name: 'b', sqlType: 'bool', value: nullable(0.2, (r) => valueText(r, 'bool')) },
  { name: 'u', sqlType: 'uuid', value: nullable(0.12, (r) => valueText(r, 'uuid')) },
  { name: 'd', sqlType: 'date', value: nullable(0.12, (r) => valueText(r, 'date')) },
  { name: 'ts', sqlType: 'timestamp', value: nullable(0.12, (r) => valueText(r, 'timestamp')) },
  {
    name: 'tstz',
    sqlType: 'timestamptz',
    value: nullable(0.12, (r) => valueText(r, 'timestamptz')),
  },
  { name: 'ia', sqlType: 'int4[]', value: nullable(0.12, (r) => randomArrayText(r, 'int4')) },
  { name: 'ta', sqlType: 'text[]', value: nullable(0.12, (r) => randomArrayText(r, 'text')) },
  {
    name: 'va',
    sqlType: 'varchar(20)[]',
    value: nullable(0.2, (r) => randomArrayText(r, 'text', varchar20)),
  },
  {
    name: 'j',
    sqlType: 'jsonb',
    value: nullable(0.4, (r) => r.pick(['{}', '[]', '{"a": 1}', 'null', '"x"'])),
  },
  { name: 'Mixed Case', sqlType: 'text', value: nullable(0.15, (r) => valueText(r, 'text')) },
];

export const quoteName = (name: string) => `"${name.replace(/"/g, '""')}"`;
