import { combinedCollation, rulesOrDefault } from './collation.js';
import { functionName } from './syntax-names.js';
import type { Typed } from './typed-expr.js';
import type { FilterNode } from './filter-spec.js';
import type { WhereContext } from './where-context.js';
import type { SyntaxNode } from './where-parser.js';

/**
 * `x [NOT] LIKE|ILIKE pattern [ESCAPE e]`, also spelt `~~`, `!~~`, `~~*`, `!~~*` (`operator`).
 * `kind` (LIKE or ILIKE) names the construct in messages. The parser turns ESCAPE into a call
 * of like_escape() around the pattern; it is taken apart again here.
 */
export function like(
  cx: WhereContext,
  kind: string,
  operator: string,
  node: SyntaxNode,
): FilterNode {
  const arg = cx.typing.textOperand(cx.visit(node.lexpr as SyntaxNode), kind);
  let patternNode = node.rexpr as SyntaxNode;
  let escape: Typed | undefined;
  const call = patternNode.FuncCall as SyntaxNode | undefined;
  if (call && functionName(call) === 'like_escape') {
    const args = call.args as SyntaxNode[];
    patternNode = args[0]!;
    escape = cx.typing.textOperand(cx.visit(args[1]!), 'ESCAPE');
  }
  const pattern = cx.typing.textOperand(cx.visit(patternNode), kind);
  // Called for its refusals: like_escape(pattern, escape) derives a collation in Postgres too.
  if (escape) combinedCollation(pattern, escape);
  return {
    op: 'like',
    caseInsensitive: operator.endsWith('*'),
    negated: operator.startsWith('!'),
    text: rulesOrDefault(cx.table.defaultText, arg, pattern).rules,
    arg: arg.node,
    pattern: pattern.node,
    escape: escape?.node,
  };
}
