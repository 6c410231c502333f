import assert from 'node:assert/strict';
import { test } from 'node:test';
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
  numericFromBigInt,
  numericToFloat8,
  numericToInt,
  parseNumeric,
  subNumeric,
  type PgNumeric,
  type PgNumericErrorCode,
} from './pg-numeric.js';

const p = parseNumeric;
const fmt = formatNumeric;
type BinaryOp = (a: PgNumeric, b: PgNumeric) => PgNumeric;

function op(fn: BinaryOp, a: string, b: string): string {
  return fmt(fn(p(a), p(b)));
}

function throwsCode(fn: () => unknown, code: PgNumericErrorCode, message?: RegExp) {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof PgNumericError, `expected a PgNumericError, got ${String(error)}`);
    assert.equal(error.name, 'PgNumericError');
    assert.equal(error.code, code);
    if (message) assert.match(error.message, message);
    return true;
  });
}

test('parseNumeric and formatNumeric round-trip numeric_out text, keeping the dscale', () => {
  for (const text of [
    '0',
    '0.000',
    '-12.340',
    '1.50',
    '0.0001',
    '-0.5',
    '123456789012345678901234567890.123',
    'NaN',
    'Infinity',
    '-Infinity',
  ]) {
    assert.equal(fmt(p(text)), text);
  }
  assert.deepEqual(p('1.50'), { kind: 'finite', digits: 150n, scale: 2 });
  assert.deepEqual(p('-0.05'), { kind: 'finite', digits: -5n, scale: 2 });
  assert.deepEqual(p('NaN'), { kind: 'nan' });
  assert.deepEqual(p('-Infinity'), { kind: 'inf', negative: true });
  assert.equal(fmt(numericFromBigInt(-42n)), '-42');
  assert.equal(fmt({ kind: 'finite', digits: -5n, scale: 3 }), '-0.005');
});

test('parseNumeric rejects what numeric_out never prints with 22P02', () => {
  for (const text of ['', '1e5', '+1', ' 1', '1 ', '.5', '5.', '01', '-0', '-0.00', 'nan', 'inf']) {
    throwsCode(() => p(text), '22P02', /invalid input syntax for type numeric/);
  }
});

test('values beyond the storage format overflow with 22003', () => {
  p('9'.repeat(131072));
  throwsCode(() => p('1' + '0'.repeat(131072)), '22003', /value overflows numeric format/);
  p('0.' + '0'.repeat(16382) + '1');
  throwsCode(() => p('0.' + '0'.repeat(16383) + '1'), '22003');
  throwsCode(() => addNumeric(p('9'.repeat(131072)), p('1')), '22003');
});

test('compareNumeric uses the btree order: -Infinity < finite < Infinity < NaN, NaN = NaN', () => {
  const ordered = ['-Infinity', '-1', '-0.5', '0', '0.0001', '1.5', 'Infinity', 'NaN'];
  for (const [i, a] of ordered.entries()) {
    for (const [j, b] of ordered.entries()) {
      assert.equal(compareNumeric(p(a), p(b)), Math.sign(i - j), `${a} vs ${b}`);
    }
  }
  assert.equal(compareNumeric(p('1.5'), p('1.50')), 0);
  assert.equal(compareNumeric(p('0'), p('0.000')), 0);
});

test('numericEqualityKey is equal exactly for values compareNumeric calls equal', () => {
  assert.equal(numericEqualityKey(p('1.500')), numericEqualityKey(p('1.5')));
  assert.equal(numericEqualityKey(p('0.00')), '0');
  assert.equal(numericEqualityKey(p('100')), '100');
  assert.equal(numericEqualityKey(p('-2.10')), '-2.1');
  assert.notEqual(numericEqualityKey(p('10')), numericEqualityKey(p('1')));
  assert.equal(numericEqualityKey(p('NaN')), 'NaN');
  assert.notEqual(numericEqualityKey(p('Infinity')), numericEqualityKey(p('-Infinity')));
});

test('addition, subtraction and multiplication scales', () => {
  assert.equal(op(addNumeric, '1.5', '2.25'), '3.75');
  assert.equal(op(addNumeric, '1.50', '-1.5'), '0.00');
  assert.equal(op(subNumeric, '1', '0.001'), '0.999');
  assert.equal(op(mulNumeric, '1.50', '2.0'), '3.000');
  assert.equal(op(mulNumeric, '-0.5', '0.00'), '0.000');
  assert.equal(fmt(negateNumeric(p('0.0'))), '0.0');
  assert.equal(fmt(negateNumeric(p('-Infinity'))), 'Infinity');
  // A product scale past 16383 is rounded (half away from zero) to 16383.
  const half = '0.' + '0'.repeat(8999) + '5'; // 5e-9000
  const product = mulNumeric(p(half), p('0.' + '0'.repeat(7383) + '1')); // 5e-16384
  assert.deepEqual(product, { kind: 'finite', digits: 1n, scale: 16383 });
});

test('special values follow Postgres 14+ rules', () => {
  assert.equal(op(subNumeric, 'Infinity', 'Infinity'), 'NaN');
  assert.equal(op(addNumeric, 'Infinity', '-Infinity'), 'NaN');
  assert.equal(op(addNumeric, '-Infinity', '5'), '-Infinity');
  assert.equal(op(subNumeric, '5', '-Infinity'), 'Infinity');
  assert.equal(op(mulNumeric, '0', 'Infinity'), 'NaN');
  assert.equal(op(mulNumeric, '-2', 'Infinity'), '-Infinity');
  assert.equal(op(divNumeric, '5', 'Infinity'), '0');
  assert.equal(op(divNumeric, 'Infinity', '-2'), '-Infinity');
  assert.equal(op(divNumeric, 'Infinity', 'Infinity'), 'NaN');
  assert.equal(op(divNumeric, 'NaN', '0'), 'NaN');
  assert.equal(op(modNumeric, '5.25', '-Infinity'), '5.25');
  assert.equal(op(modNumeric, 'Infinity', '3'), 'NaN');
  assert.equal(op(modNumeric, 'NaN', '0'), 'NaN');
  assert.equal(op(addNumeric, 'NaN', 'Infinity'), 'NaN');
});

test('division picks select_div_scale and rounds half away from zero', () => {
  assert.equal(op(divNumeric, '1', '3'), '0.33333333333333333333');
  assert.equal(op(divNumeric, '10', '4'), '2.5000000000000000');
  assert.equal(op(divNumeric, '1.0', '3.00'), '0.33333333333333333333');
  assert.equal(op(divNumeric, '2', '3'), '0.66666666666666666667');
  assert.equal(op(divNumeric, '-2', '3'), '-0.66666666666666666667');
  assert.equal(op(divNumeric, '1', '8.0000000000000000000'), '0.12500000000000000000');
  assert.equal(op(divNumeric, '0', '7'), '0.00000000000000000000');
  assert.equal(op(divNumeric, '123456789', '0.001'), '123456789000.00000000');
  // The scale comes from base-10000 weights: 3000000 is 300|0000, so qweight is -2 and the
  // quotient gets 16 + 8 decimals although only 18 of them are significant.
  assert.equal(op(divNumeric, '1', '3000000'), '0.000000333333333333333333');
  assert.equal(op(divNumeric, '1', '1048576'), '0.000000953674316406250000');
  assert.equal(
    op(divNumeric, '5', '1' + '0'.repeat(21)),
    '0.' + '0'.repeat(20) + '5' + '0'.repeat(19),
  );
  // The scale is capped at 1000 even when an input has more (1e-1500 has dscale 1500).
  assert.equal(
    op(divNumeric, '1', '0.' + '0'.repeat(1499) + '1'),
    '1' + '0'.repeat(1500) + '.' + '0'.repeat(1000),
  );
});

test('modulo takes the sign of the dividend and the larger scale', () => {
  assert.equal(op(modNumeric, '7', '-3'), '1');
  assert.equal(op(modNumeric, '-7', '3'), '-1');
  assert.equal(op(modNumeric, '7.5', '2'), '1.5');
  assert.equal(op(modNumeric, '7', '2.50'), '2.00');
  assert.equal(op(modNumeric, '-6', '3'), '0');
});

test('division by zero raises 22012, also for Inf / 0 and Inf % 0', () => {
  throwsCode(() => op(divNumeric, '1', '0'), '22012', /division by zero/);
  throwsCode(() => op(divNumeric, '0', '0.00'), '22012');
  throwsCode(() => op(divNumeric, 'Infinity', '0'), '22012');
  throwsCode(() => op(modNumeric, '1', '0'), '22012');
  throwsCode(() => op(modNumeric, '-Infinity', '0'), '22012');
});

test('numericToInt rounds half away from zero and checks the range', () => {
  assert.equal(numericToInt(p('2.5'), 64), 3n);
  assert.equal(numericToInt(p('-2.5'), 64), -3n);
  assert.equal(numericToInt(p('2.49'), 32), 2n);
  assert.equal(numericToInt(p('-0.5'), 16), -1n);
  assert.equal(numericToInt(p('32767.4'), 16), 32767n);
  assert.equal(numericToInt(p('-32768.5'), 32), -32769n);
  assert.equal(numericToInt(p('-9223372036854775808'), 64), -(2n ** 63n));
  throwsCode(() => numericToInt(p('32767.5'), 16), '22003', /^smallint out of range$/);
  throwsCode(() => numericToInt(p('2147483648'), 32), '22003', /^integer out of range$/);
  throwsCode(() => numericToInt(p('9223372036854775807.5'), 64), '22003', /^bigint out of range$/);
  throwsCode(() => numericToInt(p('NaN'), 64), '0A000', /cannot convert NaN to bigint/);
  throwsCode(() => numericToInt(p('-Infinity'), 32), '0A000', /cannot convert infinity/);
});

test('numericToFloat8 is correctly rounded and range-checked', () => {
  assert.equal(numericToFloat8(p('0.1')), 0.1);
  assert.equal(numericToFloat8(p('-12.340')), -12.34);
  assert.equal(numericToFloat8(p('9007199254740993')), 9007199254740992);
  assert.ok(Number.isNaN(numericToFloat8(p('NaN'))));
  assert.equal(numericToFloat8(p('-Infinity')), -Infinity);
  assert.equal(numericToFloat8(p('0.' + '0'.repeat(320) + '1')), 1e-321); // denormal: fine
  throwsCode(() => numericToFloat8(p('1' + '0'.repeat(400))), '22003', /double precision/);
  throwsCode(() => numericToFloat8(p('0.' + '0'.repeat(400) + '1')), '22003');
});

test('float8ToNumeric keeps DBL_DIG / FLT_DIG significant digits like "%.*g"', () => {
  const cases: [number, 15 | 6, string][] = [
    [0.1, 15, '0.1'],
    [1e20, 15, '100000000000000000000'],
    [1.5e-7, 15, '0.00000015'],
    [-0, 15, '0'],
    [1 / 3, 15, '0.333333333333333'],
    [123456789012345.67, 15, '123456789012346'],
    // Exact binary ties round half to even, like glibc's printf (toPrecision would round up).
    [123456789012.3125, 15, '123456789012.312'],
    [1000000000000005, 15, '1000000000000000'],
    [1000000000000015, 15, '1000000000000020'],
    [Number.MAX_VALUE, 15, '179769313486232' + '0'.repeat(294)],
    [5e-324, 15, '0.' + '0'.repeat(323) + '494065645841247'],
    [Math.fround(0.1), 6, '0.1'],
    [Math.fround(16777216.5), 6, '16777200'],
    [Math.fround(-3.4028234663852886e38), 6, '-340282000000000000000000000000000000000'],
  ];
  for (const [x, digits, expected] of cases) {
    assert.equal(fmt(float8ToNumeric(x, digits)), expected, `${x} with ${digits} digits`);
  }
  assert.deepEqual(float8ToNumeric(NaN, 15), { kind: 'nan' });
  assert.deepEqual(float8ToNumeric(-Infinity, 6), { kind: 'inf', negative: true });
});
