// The clause generator of the where-clause differential test (where-differential.pg.test.ts):
// typed, so that most clauses are valid, with some deliberately wrong.

import {
  randomArrayText,
  valueText,
  type Random,
  type Scalar,
} from './differential-values-testing.js';

const MAX_DEPTH = 4;

// ---------------------------------------------------------------------------------------------
// The clause generator: typed, so that most clauses are valid, with some deliberately wrong.

type Category = 'bool' | 'number' | 'text' | 'uuid' | 'datetime';

interface Expr {
  sql: string;
  /** 'unknown' for an untyped literal or `$n`, which the context types. */
  type: Scalar | 'unknown';
  array: boolean;
}

const NUMBER_TYPES: Scalar[] = ['int2', 'int4', 'int8', 'numeric', 'float4', 'float8'];
const DATETIME_TYPES: Scalar[] = ['date', 'timestamp', 'timestamptz'];
const CATEGORY_OF: Record<Scalar, Category> = {
  bool: 'bool',
  int2: 'number',
  int4: 'number',
  int8: 'number',
  numeric: 'number',
  float4: 'number',
  float8: 'number',
  text: 'text',
  uuid: 'uuid',
  date: 'datetime',
  timestamp: 'datetime',
  timestamptz: 'datetime',
};
const COLUMN_NAMES: Partial<Record<Scalar, string[]>> = {
  bool: ['b'],
  int2: ['i2'],
  int4: ['i4', 'id'],
  int8: ['i8'],
  numeric: ['num'],
  float4: ['f4'],
  float8: ['f8'],
  text: ['txt', 'vc', '"Mixed Case"'],
  uuid: ['u'],
  date: ['d'],
  timestamp: ['ts'],
  timestamptz: ['tstz'],
};
const ARRAY_COLUMNS: Partial<Record<Scalar, string[]>> = {
  int4: ['ia'],
  text: ['ta', 'ta', 'va'],
};
const TYPE_SPELLINGS: Record<Scalar, string[]> = {
  bool: ['bool', 'boolean'],
  int2: ['int2', 'smallint'],
  int4: ['int4', 'integer', 'int'],
  int8: ['int8', 'bigint'],
  numeric: ['numeric', 'decimal'],
  float4: ['float4', 'real'],
  float8: ['float8', 'double precision'],
  text: ['text', 'varchar'],
  uuid: ['uuid'],
  date: ['date'],
  timestamp: ['timestamp', 'timestamp without time zone'],
  timestamptz: ['timestamptz', 'timestamp with time zone'],
};
const NUMBER_RANK: Partial<Record<Scalar, number>> = {
  int2: 1,
  int4: 2,
  int8: 3,
  numeric: 4,
  float4: 5,
  float8: 6,
};
const LIKE_PATTERNS = [
  '%',
  'a%',
  '%b',
  '_',
  '__',
  'a_c',
  '%\\%%',
  '\\_%',
  'abc',
  'ABC',
  '%é%',
  'İ%',
  'ı%',
  'ß',
  'SS',
  '%Σ%',
  '%σ%',
  '😀%',
  '_😀_',
  '%\\',
  '\\',
  'x%',
  '%a%b%',
  '%%',
  'A%',
  '',
  'ǅ%',
  'a!%',
  '!%%',
  'Xa%',
  '%X',
  'aX',
];
const LIKE_ESCAPES = ['\\', '', '!', 'a', 'X', 'x', '%', '_', 'ß', '😀', 'ab'];
const COMPARE_OPERATORS = ['=', '<>', '!=', '<', '<=', '>', '>='];

const sqlString = (text: string) => `'${text.replace(/'/g, "''")}'`;
const isInteger = (t: string) => t === 'int2' || t === 'int4' || t === 'int8';

/** The type Postgres gives `a op b` for two numbers (its operator resolution). */
function arithmeticType(a: Scalar, b: Scalar): Scalar {
  if (isInteger(a) && isInteger(b)) return NUMBER_RANK[a]! >= NUMBER_RANK[b]! ? a : b;
  if (a.startsWith('float') || b.startsWith('float'))
    return a === 'float4' && b === 'float4' ? 'float4' : 'float8';
  return 'numeric';
}

/** select_common_type for numbers: the type every other one converts to implicitly. */
function commonNumberType(types: Scalar[]): Scalar {
  return types.reduce((a, b) => (NUMBER_RANK[a]! >= NUMBER_RANK[b]! ? a : b));
}

export class ClauseGenerator {
  readonly params: string[] = [];
  constructor(private readonly r: Random) {}

  clause(): string {
    if (this.r.chance(0.04)) return this.odd();
    return this.bool(this.r.int(1, MAX_DEPTH)).sql;
  }

  // -- leaves -----------------------------------------------------------------------------

  column(type: Scalar): Expr | undefined {
    const names = COLUMN_NAMES[type];
    if (!names) return undefined;
    const name = this.r.pick(names);
    const sql = !name.startsWith('"') && this.r.chance(0.1) ? `"${name}"` : name;
    return { sql, type, array: false };
  }

  param(text: string): string {
    this.params.push(text);
    return `$${this.params.length}`;
  }

  spelling(type: Scalar): string {
    return this.r.pick(TYPE_SPELLINGS[type]);
  }

  /** A constant whose type is known without context. */
  constant(type: Scalar): Expr {
    const { r } = this;
    const make = (sql: string): Expr => ({ sql, type, array: false });
    if (r.chance(0.04)) return make(`NULL::${this.spelling(type)}`);
    const text = valueText(r, type);
    if (r.chance(0.06)) return make(`${this.param(text)}::${this.spelling(type)}`);
    const integer = /^-?\d+$/.test(text) ? BigInt(text) : undefined;
    if (type === 'int4' && integer !== undefined && r.chance(0.7))
      return make(this.integer(integer));
    if (type === 'int8' && integer !== undefined && r.chance(0.6)) {
      const literal = this.integer(integer);
      return make(integer >= -(2n ** 31n) && integer < 2n ** 31n ? `${literal}::int8` : literal);
    }
    if (type === 'numeric' && /^-?\d+\.\d+$/.test(text) && r.chance(0.6)) {
      return make(r.chance(0.8) ? text : this.exponent(text));
    }
    if (type === 'bool' && r.chance(0.7)) return make(text === 't' ? 'true' : 'FALSE');
    const literal = sqlString(text);
    return r.weighted([
      [4, () => make(`${literal}::${this.spelling(type)}`)],
      [1, () => make(`CAST(${literal} AS ${this.spelling(type)})`)],
      [1, () => make(`${TYPE_SPELLINGS[type][0]} ${literal}`)],
    ])();
  }

  /** An integer literal, sometimes spelt in hexadecimal, octal or with underscores. */
  integer(value: bigint): string {
    const sign = value < 0n ? '-' : '';
    const magnitude = value < 0n ? -value : value;
    return this.r.weighted<() => string>([
      [8, () => String(value)],
      [1, () => `${sign}0x${magnitude.toString(16)}`],
      [0.5, () => `${sign}0o${magnitude.toString(8)}`],
      [0.5, () => String(value).replace(/(\d)(?=(\d{3})+$)/g, '$1_')],
    ])();
  }

  /** A decimal in exponent notation, the same value: `1.5` as `15e-1` or `.15e1`. */
  exponent(text: string): string {
    const [whole = '', fraction = ''] = text.replace('-', '').split('.');
    const digits = `${whole}${fraction}`;
    const point = this.r.int(0, digits.length);
    const mantissa = `${digits.slice(0, point)}.${digits.slice(point)}`;
    const exponent = digits.length - point - fraction.length;
    return `${text.startsWith('-') ? '-' : ''}${mantissa}e${exponent}`;
  }

  /** An untyped literal or `$n` holding a value of `type` (the context must type it). */
  untyped(type: Scalar, array = false): Expr {
    const { r } = this;
    if (r.chance(0.05)) return { sql: 'NULL', type: 'unknown', array };
    let text = array ? randomArrayText(r, type) : valueText(r, type);
    if (!array && isInteger(type) && r.chance(0.1)) text = r.pick([` ${text} `, `+${text}`]);
    const sql = r.chance(0.35) ? this.param(text) : sqlString(text);
    return { sql, type: 'unknown', array };
  }

  leaf(type: Scalar): Expr {
    if (this.r.chance(0.55)) {
      const column = this.column(type);
      if (column) return column;
    }
    return this.constant(type);
  }

  /** An operand to meet `other`: often an untyped literal or param of its type. */
  partner(other: Expr, depth: number): Expr {
    if (other.type !== 'unknown' && this.r.chance(0.3))
      return this.untyped(other.type, other.array);
    if (other.array) {
      return this.array(other.type === 'unknown' ? 'int4' : other.type, depth);
    }
    const category = other.type === 'unknown' ? 'text' : CATEGORY_OF[other.type];
    return this.of(category, depth);
  }

  // -- expressions of a category -----------------------------------------------------------

  of(category: Category, depth: number): Expr {
    switch (category) {
      case 'bool':
        return this.bool(depth);
      case 'number':
        return this.number(depth);
      case 'text':
        return this.text(depth);
      case 'uuid':
        return this.uuid(depth);
      case 'datetime':
        return this.datetime(depth);
    }
  }

  /** An expression of exactly `type`, cast when the generated one differs. */
  exact(type: Scalar, depth: number): Expr {
    const e = this.of(CATEGORY_OF[type], depth);
    if (e.type === type) return e;
    return { sql: `(${e.sql})::${this.spelling(type)}`, type, array: false };
  }

  coalesce(category: Category, depth: number): Expr {
    const args = Array.from({ length: this.r.int(2, 3) }, () => this.of(category, depth - 1));
    if (this.r.chance(0.3)) args.splice(this.r.int(0, args.length), 0, this.untypedLike(args[0]!));
    const types = args.map((a) => a.type).filter((t): t is Scalar => t !== 'unknown');
    const type =
      category === 'number'
        ? commonNumberType(types)
        : category === 'datetime'
          ? types.reduce((a, b) => (DATETIME_TYPES.indexOf(a) >= DATETIME_TYPES.indexOf(b) ? a : b))
          : types[0]!;
    return { sql: `COALESCE(${args.map((a) => a.sql).join(', ')})`, type, array: false };
  }

  untypedLike(e: Expr): Expr {
    return e.type === 'unknown'
      ? { sql: 'NULL', type: 'unknown', array: false }
      : this.untyped(e.type, e.array);
  }

  number(depth: number): Expr {
    const { r } = this;
    if (depth <= 0 || r.chance(0.3)) return this.leaf(r.pick([...NUMBER_TYPES, 'int4', 'int8']));
    return r.weighted<() => Expr>([
      [4, () => this.arithmetic(depth)],
      [1, () => ({ ...this.number(depth - 1), sql: `(- ${this.number(depth - 1).sql})` })],
      [1.5, () => this.numberCast(depth)],
      [0.7, () => ({ sql: `length(${this.text(depth - 1).sql})`, type: 'int4', array: false })],
      [0.7, () => this.coalesce('number', depth)],
    ])();
  }

  arithmetic(depth: number): Expr {
    const left = this.number(depth - 1);
    const right = this.partner(left, depth - 1);
    const operator = this.r.pick(['+', '-', '*', '/', '%', '+', '*']);
    const [a, b] = this.r.chance(0.5) ? [left, right] : [right, left];
    const l = a.type === 'unknown' ? (b.type as Scalar) : a.type;
    const rt = b.type === 'unknown' ? l : b.type;
    return { sql: `(${a.sql} ${operator} ${b.sql})`, type: arithmeticType(l, rt), array: false };
  }

  numberCast(depth: number): Expr {
    const arg = this.number(depth - 1);
    const type = this.r.pick(NUMBER_TYPES);
    const spelled = this.spelling(type);
    const sql = this.r.chance(0.7) ? `(${arg.sql})::${spelled}` : `CAST(${arg.sql} AS ${spelled})`;
    return { sql, type, array: false };
  }

  text(depth: number): Expr {
    const { r } = this;
    if (depth <= 0 || r.chance(0.35)) {
      if (r.chance(0.2))
        return { sql: sqlString(valueText(r, 'text')), type: 'text', array: false };
      return this.leaf('text');
    }
    const text = (sql: string): Expr => ({ sql, type: 'text', array: false });
    return r.weighted<() => Expr>([
      [
        3,
        () => {
          const other = r.weighted<() => Expr>([
            [5, () => this.text(depth - 1)],
            [1, () => this.leaf(r.pick(['int2', 'int4', 'int8']))],
            [0.5, () => this.uuid(depth - 1)],
            [0.5, () => this.leaf('bool')],
          ])();
          const left = this.text(depth - 1);
          return text(
            r.chance(0.5) ? `(${left.sql} || ${other.sql})` : `(${other.sql} || ${left.sql})`,
          );
        },
      ],
      [2, () => text(`${r.pick(['lower', 'upper'])}(${this.text(depth - 1).sql})`)],
      [
        1,
        () => {
          const arg = r.weighted<() => Expr>([
            [2, () => this.leaf(r.pick(['int2', 'int4', 'int8']))],
            [1, () => this.uuid(depth - 1)],
            [1, () => this.bool(depth - 1)],
          ])();
          return text(`(${arg.sql})::${this.spelling('text')}`);
        },
      ],
      [0.7, () => this.coalesce('text', depth)],
      [
        0.7,
        () => {
          // concat(): NULLs left out, integers and uuid by their text output.
          const arg = r.weighted<() => Expr>([
            [3, () => this.text(depth - 1)],
            [1, () => this.leaf(r.pick(['int2', 'int4', 'int8']))],
            [1, () => this.uuid(depth - 1)],
          ]);
          const args = [
            arg(),
            ...(r.chance(0.7) ? [arg()] : []),
            ...(r.chance(0.3) ? [arg()] : []),
          ];
          return text(`concat(${args.map((a) => a.sql).join(', ')})`);
        },
      ],
      [0.5, () => text(`(${this.text(depth - 1).sql} COLLATE ${r.pick(['"C"', '"POSIX"'])})`)],
    ])();
  }

  uuid(depth: number): Expr {
    if (depth <= 0 || this.r.chance(0.8)) return this.leaf('uuid');
    return this.coalesce('uuid', depth);
  }

  datetime(depth: number): Expr {
    const { r } = this;
    if (depth <= 0 || r.chance(0.5)) return this.leaf(r.pick(DATETIME_TYPES));
    if (r.chance(0.6)) {
      const type = r.pick(DATETIME_TYPES);
      return {
        sql: `(${this.datetime(depth - 1).sql})::${this.spelling(type)}`,
        type,
        array: false,
      };
    }
    return this.coalesce('datetime', depth);
  }

  /** An array of exactly `element`[]. */
  array(element: Scalar, depth: number): Expr {
    const { r } = this;
    const type = element;
    const columns = ARRAY_COLUMNS[element];
    const roll = r.next();
    if (columns && roll < 0.45) return { sql: r.pick(columns), type, array: true };
    if (roll < 0.7) {
      const literal = sqlString(randomArrayText(r, element));
      const spelled = `${TYPE_SPELLINGS[element][0]}[]`;
      return {
        sql: r.chance(0.8) ? `${literal}::${spelled}` : `CAST(${literal} AS ${spelled})`,
        type,
        array: true,
      };
    }
    const count = r.int(1, 4);
    if (r.chance(0.2)) {
      // ARRAY[…]::type[] converts each element explicitly.
      const items = Array.from({ length: count }, () =>
        r.chance(0.4) ? this.untyped(element) : this.of(CATEGORY_OF[element], depth - 1),
      );
      const sql = `ARRAY[${items.map((e) => e.sql).join(', ')}]::${TYPE_SPELLINGS[element][0]}[]`;
      return { sql, type, array: true };
    }
    const items = [this.exact(element, depth - 1)];
    for (let i = 1; i < count; i++) {
      items.push(r.chance(0.3) ? this.untyped(element) : this.exact(element, depth - 1));
    }
    return { sql: `ARRAY[${items.map((e) => e.sql).join(', ')}]`, type, array: true };
  }

  // -- booleans ----------------------------------------------------------------------------

  bool(depth: number): Expr {
    const { r } = this;
    const bool = (sql: string): Expr => ({ sql, type: 'bool', array: false });
    if (depth <= 0 || r.chance(0.08)) {
      return r.weighted<() => Expr>([
        [3, () => this.leaf('bool')],
        [1, () => bool(`(${this.anything(0).sql} IS ${r.pick(['', 'NOT '])}NULL)`)],
        [0.3, () => bool(sqlString(r.pick(['t', 'false', 'yes', 'off'])))],
      ])();
    }
    const d = depth - 1;
    return r.weighted<() => Expr>([
      [6, () => bool(this.comparison(d))],
      [3, () => bool(`(${this.boolArgs(d).join(r.pick([' AND ', ' OR ']))})`)],
      [1, () => bool(`(NOT ${this.bool(d).sql})`)],
      [1.5, () => bool(`(${this.anything(d).sql} IS ${r.pick(['', 'NOT '])}NULL)`)],
      [
        1,
        () =>
          bool(
            `(${this.bool(d).sql} IS ${r.pick(['', 'NOT '])}${r.pick(['TRUE', 'FALSE', 'UNKNOWN'])})`,
          ),
      ],
      [1, () => bool(this.distinct(d))],
      [2, () => bool(this.inList(d))],
      [1.5, () => bool(this.between(d))],
      [2, () => bool(this.like(d))],
      [1.5, () => bool(this.arrayOperator(d))],
      [1.5, () => bool(this.any(d))],
      [0.3, () => this.coalesce('bool', depth)],
      [0.2, () => bool(this.odd())],
    ])();
  }

  boolArgs(depth: number): string[] {
    return Array.from({ length: this.r.int(2, 3) }, () => this.bool(depth).sql);
  }

  pickCategory(): Category {
    return this.r.weighted<Category>([
      [5, 'number'],
      [2.5, 'text'],
      [2, 'datetime'],
      [1, 'uuid'],
      [0.5, 'bool'],
    ]);
  }

  pickElement(): Scalar {
    return this.r.weighted<Scalar>([
      [4, 'int4'],
      [3, 'text'],
      [1, 'int8'],
      [1, 'numeric'],
      [0.5, 'int2'],
      [0.5, 'float4'],
      [0.5, 'float8'],
      [1, 'date'],
      [0.5, 'timestamp'],
      [0.5, 'timestamptz'],
      [0.5, 'uuid'],
      [0.5, 'bool'],
    ]);
  }

  /** Any expression, arrays and the jsonb column included. */
  anything(depth: number): Expr {
    const { r } = this;
    if (r.chance(0.1)) return { sql: 'j', type: 'unknown', array: false };
    if (r.chance(0.15)) return this.array(this.pickElement(), depth);
    return this.of(this.pickCategory(), depth);
  }

  /** Two operands that Postgres can compare. */
  pair(depth: number): [Expr, Expr] {
    if (this.r.chance(0.12)) {
      const element = this.pickElement();
      const left = this.array(element, depth);
      return [left, this.r.chance(0.3) ? this.untyped(element, true) : this.array(element, depth)];
    }
    const left = this.of(this.pickCategory(), depth);
    const right = this.partner(left, depth);
    return this.r.chance(0.5) ? [left, right] : [right, left];
  }

  comparison(depth: number): string {
    const [left, right] = this.pair(depth);
    const ordering = left.array || right.array ? this.r.chance(0.1) : true;
    const operator = ordering ? this.r.pick(COMPARE_OPERATORS) : this.r.pick(['=', '<>']);
    return `(${left.sql} ${operator} ${right.sql})`;
  }

  distinct(depth: number): string {
    const [left, right] = this.pair(depth);
    return `(${left.sql} IS ${this.r.pick(['', 'NOT '])}DISTINCT FROM ${right.sql})`;
  }

  inList(depth: number): string {
    const arg = this.r.chance(0.1)
      ? this.array(this.pickElement(), depth)
      : this.of(this.pickCategory(), depth);
    const items = Array.from({ length: this.r.int(1, 5) }, () =>
      this.r.chance(0.15) ? this.leafOrNull(arg) : this.partner(arg, depth),
    );
    return `(${arg.sql} ${this.r.pick(['', 'NOT '])}IN (${items.map((i) => i.sql).join(', ')}))`;
  }

  leafOrNull(other: Expr): Expr {
    if (this.r.chance(0.5) || other.type === 'unknown')
      return { sql: 'NULL', type: 'unknown', array: false };
    return other.array ? this.array(other.type, 0) : this.leaf(other.type);
  }

  between(depth: number): string {
    const arg = this.of(this.pickCategory(), depth);
    const low = this.partner(arg, depth);
    const high = this.partner(arg, depth);
    const not = this.r.pick(['', 'NOT ']);
    const symmetric = this.r.pick(['', 'SYMMETRIC ']);
    return `(${arg.sql} ${not}BETWEEN ${symmetric}${low.sql} AND ${high.sql})`;
  }

  like(depth: number): string {
    const { r } = this;
    const arg = this.text(depth);
    const pattern = r.weighted<() => string>([
      [4, () => sqlString(r.pick(LIKE_PATTERNS))],
      [1, () => this.param(r.pick(LIKE_PATTERNS))],
      [1, () => this.text(depth).sql],
      [0.5, () => `(${this.text(0).sql} || '%')`],
    ])();
    if (r.chance(0.15)) {
      const operator = r.pick(['~~', '!~~', '~~*', '!~~*']);
      return `(${arg.sql} ${operator} ${pattern})`;
    }
    const operator = `${r.pick(['', 'NOT '])}${r.pick(['LIKE', 'ILIKE'])}`;
    const escape = r.chance(0.3)
      ? ` ESCAPE ${r.chance(0.9) ? sqlString(r.pick(LIKE_ESCAPES)) : this.text(0).sql}`
      : '';
    return `(${arg.sql} ${operator} ${pattern}${escape})`;
  }

  arrayOperator(depth: number): string {
    const element = this.pickElement();
    const left = this.array(element, depth);
    const right = this.r.chance(0.25) ? this.untyped(element, true) : this.array(element, depth);
    const [a, b] = this.r.chance(0.5) ? [left, right] : [right, left];
    return `(${a.sql} ${this.r.pick(['@>', '<@', '&&'])} ${b.sql})`;
  }

  any(depth: number): string {
    const element = this.pickElement();
    const arg = this.r.chance(0.2) ? this.untyped(element) : this.of(CATEGORY_OF[element], depth);
    const array =
      arg.type !== 'unknown' && this.r.chance(0.25)
        ? this.untyped(element, true)
        : this.array(element, depth);
    return `(${arg.sql} = ANY (${array.sql}))`;
  }

  /** Clauses outside the subset or plainly wrong: refusals must match Postgres or be known. */
  odd(): string {
    const { r } = this;
    const n = () => this.number(1).sql;
    const t = () => this.text(1).sql;
    return r.pick<() => string>([
      () => `abs(${n()}) > 1`,
      () => `(CASE WHEN b THEN 1 ELSE 0 END) = i4`,
      () => `i4 = (SELECT 1)`,
      () => `${t()}::int4 = 1`,
      () => `ia[1] = 1`,
      () => `txt ~ 'a'`,
      () => `i4::bool`,
      () => `b::int4 = 1`,
      () => `(f8 % 2) = 0`,
      () => `(${n()} % ${this.constant('float8').sql}) > 0`,
      () => `ia < ARRAY[1]`,
      () => `txt = i4`,
      () => `'a' + 1 = 2`,
      () => `ARRAY[]::int4[] = ia`,
      () => `ARRAY[]::text[] <@ ta`,
      () => `ARRAY[i4, 1.5]::int4[] = ia`,
      () => `ARRAY['1', i2]::int8[] @> ARRAY[i8]`,
      () => `ARRAY[1, 2]::int8[] @> ARRAY[i8]`,
      () => `now() > tstz`,
      () => `current_date > d`,
      () => `NULLIF(i4, 0) = 1`,
      () => `GREATEST(i4, 1) = 1`,
      () => `i4 = ALL('{1,2}')`,
      () => `i4 < ANY(ia)`,
      () => `num::numeric(10,2) = 1`,
      () => `txt::varchar(3) = 'ab'`,
      () => `j = '{}'`,
      () => `j IS NOT NULL`,
      () => `pg_catalog.lower(txt) = 'a'`,
      () => `public.lower(txt) = 'a'`,
      () => `txt COLLATE "pg_c_utf8" < 'b'`,
      () => `txt COLLATE "C.utf8" = 'b'`,
      () => `(i4, i2) = (1, 2)`,
      () => `i4 OPERATOR(pg_catalog.=) 1`,
      () => `${this.param('5')} IS NULL`,
      () => `txt SIMILAR TO 'a%'`,
      () => `d::text = '2000-01-01'`,
      () => `num::text = '1'`,
      () => `i4 || i4 = '11'`,
      () => `u || u = 'x'`,
      () => `'{1}'::int4[] || ia = ia`,
      () => `B'101' = B'101'`,
      () => `1e400::float8 > f8`,
      () => `1/0 = i4`,
      () => `i4 = 1 OR 1/0 = 1`,
      () => `i4`,
      () => `txt`,
      () => `NULL`,
      () => `'yes'`,
      () => `i4 = 1 AND ${this.param('x')} = 'x' AND ${this.param('1')} = i2`,
      () => `${this.param('7')} = i4 AND ${this.param('8')}::int2 = i2`,
      () => `lower(${n()}) = 'a'`,
      () => `length(${n()}) = 1`,
      () => `length(txt, 'UTF8') = 1`,
      () => `i4 IN (SELECT 1)`,
      () => `EXISTS (SELECT 1)`,
      () => `u::text = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'`,
      () => `(ia = ia) IS DISTINCT FROM (ta = ta)`,
      () => `ia @> ARRAY[1::int8]`,
      () => `ARRAY[ARRAY[1, 2], ARRAY[3, 4]] = ia`,
      () => `i4 = ANY(ARRAY[ia])`,
      () => `d + 1 > d`,
      () => `(ts - ts) IS NULL`,
      () => `t.i4 = 1`,
      () => `+i4 = ${n()}`,
      () => `va = ta`,
      () => `va @> '{a}'`,
      () => `va && ARRAY[vc, 'x']`,
      () => `E'a\\\\b' = txt`,
      () => `txt = E'\\u00e9'`,
      () => `${n()} = 1.5e3`,
      () => `(i4 + .5) > 5.`,
    ])();
  }
}
