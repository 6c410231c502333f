// Comparisons (`=`, `<>`, `<`, …) and IS [NOT] DISTINCT FROM. The operands meet in the type
// Postgres' operator resolution picks; text compares under the collation in force, and only
// where the evaluator reproduces that collation: equality under deterministic ones, ordering
// under code point order.
import { combinedCollation, rulesOrDefault } from './collation.js';
import { fail } from './fail.js';
import { operatorType } from './operand-types.js';
import type { Expr } from './typed-expr.js';
import type { FilterNode, TextRules } from './filter-spec.js';
import type { WhereContext } from './where-context.js';
import type { SyntaxNode } from './where-parser.js';

export function compare(cx: WhereContext, operator: string, left: Expr, right: Expr): FilterNode {
  const { type: domain, varchar } = operatorType(operator, left, right);
  const l = cx.typing.settle(left, domain, { lenient: true, varchar });
  const r = cx.typing.settle(right, domain, { lenient: true, varchar });
  const ordering = operator !== '=' && operator !== '<>';
  if (domain.array && ordering) fail(`ordering arrays with ${operator} is not supported`);
  let text: TextRules | undefined;
  if (domain.scalar === 'text') {
    const { rules, deterministic, name } = rulesOrDefault(cx.table.defaultText, l, r);
    if (!deterministic)
      fail(`comparing text under the nondeterministic collation "${name}" is not supported`);
    if (ordering && !rules.codePointOrder) {
      fail(
        `ordering text under collation "${name}" is not supported: add COLLATE "C" to compare by code point`,
      );
    }
    text = rules;
  }
  return {
    op: 'compare',
    operator: operator as '=',
    domain,
    text,
    left: l.node,
    right: r.node,
  };
}

/** `a IS [NOT] DISTINCT FROM b` (`kind` says which): equality that treats NULLs as values. */
export function distinctness(cx: WhereContext, kind: string, node: SyntaxNode): FilterNode {
  const left = cx.visit(node.lexpr as SyntaxNode);
  const right = cx.visit(node.rexpr as SyntaxNode);
  // IS DISTINCT FROM uses the operands' = operator, typed like a comparison.
  const { type: domain, varchar } = operatorType('=', left, right);
  const l = cx.typing.settle(left, domain, { lenient: true, varchar });
  const r = cx.typing.settle(right, domain, { lenient: true, varchar });
  // Called for its refusals: Postgres derives the operands' collation here too.
  combinedCollation(l, r);
  const negated = kind === 'AEXPR_NOT_DISTINCT';
  return { op: 'distinct', negated, domain, left: l.node, right: r.node };
}
