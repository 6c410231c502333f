import {
  addNumeric,
  divNumeric,
  modNumeric,
  mulNumeric,
  negateNumeric,
  subNumeric,
  type PgNumeric,
} from './pg-numeric.js';
import type { ArithmeticOperator } from './filter-spec.js';
import { checkInteger, EvaluationError, type Value } from './pg-values.js';
import type { ScalarType } from './pg-type.js';

const divisionByZero = () => new EvaluationError('22012', 'division by zero');

function integerArithmetic(
  type: ScalarType,
  operator: ArithmeticOperator,
  a: bigint,
  b: bigint,
): bigint {
  switch (operator) {
    case '+':
      return checkInteger(type, a + b);
    case '-':
      return checkInteger(type, a - b);
    case '*':
      return checkInteger(type, a * b);
    case '/':
      if (b === 0n) throw divisionByZero();
      // BigInt division truncates toward zero, as C does; MIN / -1 overflows.
      return checkInteger(type, a / b);
    case '%':
      if (b === 0n) throw divisionByZero();
      return a % b;
  }
}

/** float8 arithmetic with Postgres' checks: overflow and underflow from finite operands raise. */
function floatArithmetic(
  operator: ArithmeticOperator,
  a: number,
  b: number,
  single: boolean,
): number {
  let result: number;
  switch (operator) {
    case '+':
      result = a + b;
      break;
    case '-':
      result = a - b;
      break;
    case '*':
      result = a * b;
      break;
    case '/':
      if (b === 0 && !Number.isNaN(a)) throw divisionByZero();
      result = a / b;
      break;
    default:
      throw new Error('floatArithmetic: % has no float operator');
  }
  if (single) result = Math.fround(result);
  if (
    !Number.isFinite(result) &&
    !Number.isNaN(result) &&
    Number.isFinite(a) &&
    Number.isFinite(b)
  ) {
    throw new EvaluationError('22003', 'value out of range: overflow');
  }
  const underflowPossible =
    operator === '*' ? a !== 0 && b !== 0 : operator === '/' && a !== 0 && Number.isFinite(b);
  if (result === 0 && underflowPossible)
    throw new EvaluationError('22003', 'value out of range: underflow');
  return result;
}

const NUMERIC_OPERATORS: Record<ArithmeticOperator, (a: PgNumeric, b: PgNumeric) => PgNumeric> = {
  '+': addNumeric,
  '-': subNumeric,
  '*': mulNumeric,
  '/': divNumeric,
  '%': modNumeric,
};

/** `a operator b` for two non-null values of `type`, as Postgres computes it. */
export function arithmetic(
  type: ScalarType,
  operator: ArithmeticOperator,
  a: Value,
  b: Value,
): Value {
  switch (type) {
    case 'int2':
    case 'int4':
    case 'int8':
      return integerArithmetic(type, operator, a as bigint, b as bigint);
    case 'numeric':
      return NUMERIC_OPERATORS[operator](a as PgNumeric, b as PgNumeric);
    case 'float4':
      return floatArithmetic(operator, a as number, b as number, true);
    case 'float8':
      return floatArithmetic(operator, a as number, b as number, false);
    default:
      throw new Error(`arithmetic: ${type} is not a number type`);
  }
}

export function negate(type: ScalarType, value: Value): Value {
  if (type === 'numeric') return negateNumeric(value as PgNumeric);
  if (type === 'float4' || type === 'float8') return -(value as number);
  return checkInteger(type, -(value as bigint));
}
