import { compare } from './comparison.js';
import type { FilterNode } from './filter-spec.js';
import type { WhereContext } from './where-context.js';
import type { SyntaxNode } from './where-parser.js';

/**
 * `x [NOT] BETWEEN [SYMMETRIC] a AND b` (`kind` says which). Postgres rewrites BETWEEN into
 * comparisons at parse time, typing (and evaluating) `x` once per comparison; so does this.
 */
export function between(cx: WhereContext, kind: string, node: SyntaxNode): FilterNode {
  const [low, high] = ((node.rexpr as SyntaxNode).List as { items: SyntaxNode[] }).items;
  const arg = node.lexpr as SyntaxNode;
  const range = (from: SyntaxNode, to: SyntaxNode): FilterNode =>
    kind.startsWith('AEXPR_NOT')
      ? {
          op: 'or',
          args: [
            compare(cx, '<', cx.visit(arg), cx.visit(from)),
            compare(cx, '>', cx.visit(arg), cx.visit(to)),
          ],
        }
      : {
          op: 'and',
          args: [
            compare(cx, '>=', cx.visit(arg), cx.visit(from)),
            compare(cx, '<=', cx.visit(arg), cx.visit(to)),
          ],
        };
  const forward = range(low!, high!);
  if (!kind.endsWith('_SYM')) return forward;
  const backward = range(high!, low!);
  return kind.startsWith('AEXPR_NOT')
    ? { op: 'and', args: [forward, backward] }
    : { op: 'or', args: [forward, backward] };
}
