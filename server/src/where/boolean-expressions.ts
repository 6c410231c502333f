// The boolean structure of a clause: AND, OR, NOT, IS [NOT] NULL and IS [NOT] TRUE/FALSE/
// UNKNOWN, and the rule that their arguments (and the clause itself) are boolean.
import { sameType, displayTypeName } from './pg-type.js';
import { columnReference } from './column-reference.js';
import { fail } from './fail.js';
import { BOOL, type Expr, type Typed } from './typed-expr.js';
import type { FilterNode } from './filter-spec.js';
import type { WhereContext } from './where-context.js';
import type { SyntaxNode } from './where-parser.js';

/** An argument that must be boolean (`what` names its construct); an untyped one becomes one. */
export function booleanOperand(cx: WhereContext, node: SyntaxNode, what: string): FilterNode {
  const expr = cx.visit(node);
  if (!expr.untyped && !sameType(expr.type, BOOL)) {
    fail(`argument of ${what} must be type boolean, not type ${displayTypeName(expr.type)}`);
  }
  return cx.typing.settle(expr, BOOL).node;
}

/** AND, OR, NOT. */
export function boolExpr(cx: WhereContext, node: SyntaxNode): Typed {
  const op = node.boolop as string;
  const args = (node.args as SyntaxNode[]).map((arg) =>
    booleanOperand(cx, arg, op.replace('_EXPR', '')),
  );
  if (op === 'NOT_EXPR') return { node: { op: 'not', arg: args[0]! }, type: BOOL };
  return { node: { op: op === 'AND_EXPR' ? 'and' : 'or', args }, type: BOOL };
}

/** `x IS [NOT] NULL`: the one test open to columns of any type. */
export function nullTest(cx: WhereContext, node: SyntaxNode): Typed {
  const target = node.arg as SyntaxNode;
  const arg = target.ColumnRef
    ? columnReference(cx.table, target.ColumnRef as SyntaxNode, true)
    : nullTestOperand(cx, cx.visit(target));
  const negated = node.nulltesttype === 'IS_NOT_NULL';
  return { node: { op: 'is_null', negated, arg: arg.node }, type: BOOL };
}

// IS NULL does not type its operand: an untyped `$n` stays untyped, which Postgres refuses.
function nullTestOperand(cx: WhereContext, expr: Expr): Typed {
  if (expr.untyped && expr.param !== undefined) {
    fail(`could not determine data type of parameter $${expr.param}`);
  }
  return cx.typing.typed(expr);
}

/** `x IS [NOT] TRUE`, `FALSE` or `UNKNOWN`. */
export function booleanTest(cx: WhereContext, node: SyntaxNode): Typed {
  const test = (node.booltesttype as string)
    .replace('IS_NOT_', '')
    .replace('IS_', '')
    .toLowerCase();
  const negated = (node.booltesttype as string).startsWith('IS_NOT_');
  const arg = booleanOperand(cx, node.arg as SyntaxNode, 'IS TRUE/FALSE/UNKNOWN');
  return { node: { op: 'bool_test', test: test as 'true', negated, arg }, type: BOOL };
}
