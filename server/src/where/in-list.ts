import { comparisonDomain, scalar } from './pg-type.js';
import { rulesOrDefault } from './collation.js';
import { compare } from './comparison.js';
import { fail } from './fail.js';
import { tryCommonType, type OperandType } from './operand-types.js';
import { operatorName } from './syntax-names.js';
import type { Expr } from './typed-expr.js';
import type { FilterNode } from './filter-spec.js';
import type { WhereContext } from './where-context.js';
import type { SyntaxNode } from './where-parser.js';

/**
 * `x IN (…)` as transformAExprIn builds it, which decides both types and which errors are
 * raised: items that read no column, when there are several, become one `x = ANY(ARRAY[…])`
 * (an 'in' node), their type chosen from x and them alone; every other item gets its own
 * `x = item`, ORed after it (NOT IN: `<>`, ANDed). An array x is always compared item by item.
 */
export function inList(cx: WhereContext, node: SyntaxNode): FilterNode {
  const negated = operatorName(node) === '<>';
  const operator = negated ? '<>' : '=';
  const arg = cx.visit(node.lexpr as SyntaxNode);
  const itemNodes = ((node.rexpr as SyntaxNode).List as { items: SyntaxNode[] }).items;
  const items = itemNodes.map((item) => ({
    expr: cx.visit(item),
    readsColumns: hasColumn(item),
  }));
  const constants = items.filter((item) => !item.readsColumns).map((item) => item.expr);
  const common = constants.length > 1 ? tryCommonType([arg, ...constants]) : undefined;
  const parts: FilterNode[] = [];
  let separate = items;
  if (common && !common.type.array) {
    parts.push(constantList(cx, negated, arg, constants, common));
    separate = items.filter((item) => item.readsColumns);
  }
  for (const item of separate) parts.push(compare(cx, operator, arg, item.expr));
  if (parts.length === 1) return parts[0]!;
  return { op: negated ? 'and' : 'or', args: parts };
}

/** The `x = ANY(ARRAY[…])` part of an IN list: items converted to their common type. */
function constantList(
  cx: WhereContext,
  negated: boolean,
  arg: Expr,
  constants: Expr[],
  common: OperandType,
): FilterNode {
  const items = constants.map((item) => cx.typing.settle(item, common.type));
  // x meets the element type through the = operator, as in `x = ANY(…)`.
  const domain = arg.untyped
    ? common.type.scalar
    : comparisonDomain(arg.type.scalar, common.type.scalar)!;
  const a = cx.typing.settle(arg, scalar(domain), { lenient: true });
  const list = items.map((item) => cx.typing.convert(item, scalar(domain)));
  if (domain === 'text' && !rulesOrDefault(cx.table.defaultText, a, ...list).deterministic) {
    fail('comparing text under a nondeterministic collation is not supported');
  }
  return {
    op: 'in',
    negated,
    domain: scalar(domain),
    arg: a.node,
    list: list.map((item) => item.node),
  };
}

/** Whether a parse tree reads a column (Postgres' contain_vars_of_level). */
function hasColumn(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(hasColumn);
  if (typeof node !== 'object' || node === null) return false;
  return Object.entries(node).some(([key, value]) => key === 'ColumnRef' || hasColumn(value));
}
