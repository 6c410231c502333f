// Arithmetic over numbers only: the evaluator reproduces Postgres' number arithmetic exactly
// (arithmetic.ts), but not date, time or interval arithmetic.
import { categoryOf, displayTypeName, isFloat, numberDomain, scalar } from './pg-type.js';
import type { ClauseTyping } from './clause-typing.js';
import { fail } from './fail.js';
import type { Expr, Typed } from './typed-expr.js';

/** `a + b`, `a - b`, `a * b`, `a / b`, `a % b`, computed in the type Postgres picks. */
export function arithmetic(typing: ClauseTyping, operator: string, left: Expr, right: Expr): Typed {
  if (left.untyped && right.untyped) fail(`operator is not unique: unknown ${operator} unknown`);
  const lt = left.untyped ? undefined : left.type;
  const rt = right.untyped ? undefined : right.type;
  for (const t of [lt, rt]) {
    if (t && (t.array || categoryOf(t.scalar) !== 'number')) {
      fail(`operator ${operator} on ${displayTypeName(t)} is not supported (only on numbers)`);
    }
  }
  const type = numberDomain((lt ?? rt)!.scalar, (rt ?? lt)!.scalar);
  if (operator === '%' && isFloat(type))
    fail(`operator does not exist: ${displayTypeName(scalar(type))} % …`);
  const l = typing.settle(left, scalar(type));
  const r = typing.settle(right, scalar(type));
  return {
    node: { op: 'arithmetic', operator: operator as '+', type, left: l.node, right: r.node },
    type: scalar(type),
  };
}

/** Prefix `-x` and `+x` (`arg` already typed): on typed numbers only. */
export function prefixOperator(operator: string, arg: Expr): Typed {
  if (operator !== '-' && operator !== '+') fail(`prefix operator ${operator} is not supported`);
  if (arg.untyped || arg.type.array || categoryOf(arg.type.scalar) !== 'number') {
    fail(`prefix ${operator} is only supported on numbers`);
  }
  if (operator === '+') return arg;
  return { node: { op: 'negate', type: arg.type.scalar, arg: arg.node }, type: arg.type };
}
