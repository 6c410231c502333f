// The operators over arrays: `x = ANY(array)` and containment and overlap (`@>`, `<@`, `&&`).
// An untyped array constant (`'{1,2}'`) takes its element type from the other operand, as in
// Postgres, where varchar[] and text[] are different types to these operators.
import {
  arrayOf,
  comparisonDomain,
  displayTypeName,
  sameType,
  scalar,
  type ScalarType,
} from './pg-type.js';
import { combinedCollation, rulesOrDefault } from './collation.js';
import { fail } from './fail.js';
import { operatorName } from './syntax-names.js';
import { display, type Expr, type Typed } from './typed-expr.js';
import type { FilterNode } from './filter-spec.js';
import type { WhereContext } from './where-context.js';
import type { SyntaxNode } from './where-parser.js';

/** `x = ANY(array)`; only `=`, the one the evaluator reproduces. */
export function anyOperator(cx: WhereContext, node: SyntaxNode): FilterNode {
  const operator = operatorName(node);
  if (operator !== '=') fail(`${operator} ANY(…) is not supported (only = ANY(…))`);
  const arg = cx.visit(node.lexpr as SyntaxNode);
  const right = cx.visit(node.rexpr as SyntaxNode);
  const argType = arg.untyped ? undefined : arg.type;
  if (argType?.array) fail('the left side of = ANY(…) must not be an array');
  // Both untyped: Postgres resolves text = text, and the array as text[].
  const element = arg.untyped && right.untyped ? 'text' : argType?.scalar;
  const array = arrayOperand(cx, right, element, !arg.untyped && arg.varchar === true);
  const domain = comparisonDomain(argType?.scalar ?? array.type.scalar, array.type.scalar);
  if (domain === undefined) {
    fail(`operator does not exist: ${displayTypeName(argType!)} = ${displayTypeName(array.type)}`);
  }
  const left = cx.typing.settle(arg, scalar(argType ? domain : array.type.scalar), {
    lenient: true,
  });
  if (domain === 'text') {
    const { deterministic, name } = rulesOrDefault(cx.table.defaultText, left, array);
    if (!deterministic)
      fail(`comparing text under the nondeterministic collation "${name}" is not supported`);
  }
  return {
    op: 'any',
    domain,
    elementType: array.type.scalar,
    arg: left.node,
    array: array.node,
  };
}

/** `a @> b`, `a <@ b`, `a && b`: both sides of the very same array type. */
export function arrayOperator(
  cx: WhereContext,
  operator: string,
  leftExpr: Expr,
  rightExpr: Expr,
): FilterNode {
  const known = [leftExpr, rightExpr].find((e): e is Typed => !e.untyped);
  if (!known) fail(`operator is not unique: unknown ${operator} unknown`);
  const element = known.type.scalar;
  const left = arrayOperand(cx, leftExpr, element, known.varchar === true);
  const right = arrayOperand(cx, rightExpr, element, known.varchar === true);
  if (!sameType(left.type, right.type) || (left.varchar === true) !== (right.varchar === true)) {
    fail(`operator does not exist: ${display(left)} ${operator} ${display(right)}`);
  }
  // Called for its refusals: Postgres derives the operands' collation here too.
  combinedCollation(left, right);
  return {
    op: 'array_op',
    operator: operator as '@>',
    domain: element,
    left: left.node,
    right: right.node,
  };
}

/** An operand that must be an array: an untyped one becomes an array of `element`. */
function arrayOperand(
  cx: WhereContext,
  expr: Expr,
  element: ScalarType | undefined,
  varchar = false,
): Typed {
  if (expr.untyped) {
    if (element === undefined) fail('cannot tell the element type of an untyped array constant');
    return cx.typing.settle(expr, arrayOf(element), { varchar });
  }
  if (!expr.type.array) fail(`expected an array, got ${displayTypeName(expr.type)}`);
  return expr;
}
