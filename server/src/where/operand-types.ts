// The type operands are converted to before they meet, picked the way Postgres picks it, so that
// every conversion Postgres makes (and every refusal) happens here too. An operator and a list
// pick differently: `int4 = float4` compares as float8, `COALESCE(int4, float4)` is float4.
import { commonScalarType, comparisonDomain, sameType, scalar, type PgType } from './pg-type.js';
import { fail } from './fail.js';
import { display, TEXT, type Expr, type Typed } from './typed-expr.js';

/** A type operands meet in; `varchar` when that type is Postgres' varchar (or varchar[]). */
export interface OperandType {
  type: PgType;
  varchar: boolean;
}

/**
 * The type the two operands of a comparison meet in, as Postgres' operator resolution picks
 * it: numbers at the wider type (int4 with float4 at float8), dates and timestamps at the
 * later type, arrays only with the very same type (varchar[] and text[] do not meet).
 */
export function operatorType(operator: string, left: Expr, right: Expr): OperandType {
  const [a, b] = [left, right].filter((e): e is Typed => !e.untyped);
  if (!a) return { type: TEXT, varchar: false };
  if (!b) return { type: a.type, varchar: a.varchar === true };
  const mismatch = () => fail(`operator does not exist: ${display(a)} ${operator} ${display(b)}`);
  if (a.type.array || b.type.array) {
    if (!sameType(a.type, b.type) || (a.varchar === true) !== (b.varchar === true)) mismatch();
    return { type: a.type, varchar: a.varchar === true };
  }
  const domain = comparisonDomain(a.type.scalar, b.type.scalar);
  if (domain === undefined) mismatch();
  return { type: scalar(domain!), varchar: false };
}

/**
 * The type the values of a list meet in (IN lists, ARRAY[…], COALESCE), as
 * select_common_type picks it: the first typed value's type, moved to any later type it
 * converts to implicitly (int4 and float4 meet at float4 here). Undefined when they cannot.
 */
export function tryCommonType(exprs: Expr[]): OperandType | undefined {
  let first: Typed | undefined;
  let type: PgType = TEXT;
  for (const expr of exprs) {
    if (expr.untyped) continue;
    if (!first) {
      first = expr;
      type = expr.type;
    } else if (type.array || expr.type.array) {
      if (!sameType(type, expr.type) || (first.varchar === true) !== (expr.varchar === true))
        return undefined;
    } else {
      const common = commonScalarType(type.scalar, expr.type.scalar);
      if (common === undefined) return undefined;
      type = scalar(common);
    }
  }
  // varchar and text convert to each other implicitly: the first one's type stays.
  return { type, varchar: first?.varchar === true && type.scalar === 'text' };
}

/** tryCommonType, refusing lists whose values have none; `what` names the list. */
export function commonType(exprs: Expr[], what: string): OperandType {
  const common = tryCommonType(exprs);
  if (!common) {
    const types = exprs.filter((e): e is Typed => !e.untyped).map(display);
    fail(`${what} types ${[...new Set(types)].join(' and ')} cannot be matched`);
  }
  return common;
}
