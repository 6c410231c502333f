// Operator expressions (the parse tree's A_Expr): infix and prefix operators, = ANY, IS
// DISTINCT FROM, IN, LIKE and BETWEEN, each handed to the part that types it. Every kind and
// operator not listed is refused by name.
import { anyOperator, arrayOperator } from './array-operators.js';
import { arithmetic, prefixOperator } from './arithmetic-expression.js';
import { between } from './between.js';
import { compare, distinctness } from './comparison.js';
import { concat } from './concatenation.js';
import { fail } from './fail.js';
import { inList } from './in-list.js';
import { like } from './like.js';
import { operatorName } from './syntax-names.js';
import { BOOL, type Expr } from './typed-expr.js';
import type { WhereContext } from './where-context.js';
import type { SyntaxNode } from './where-parser.js';

export function operatorExpression(cx: WhereContext, node: SyntaxNode): Expr {
  const kind = node.kind as string;
  switch (kind) {
    case 'AEXPR_OP':
      return plainOperator(cx, node);
    case 'AEXPR_OP_ANY':
      return { node: anyOperator(cx, node), type: BOOL };
    case 'AEXPR_DISTINCT':
    case 'AEXPR_NOT_DISTINCT':
      return { node: distinctness(cx, kind, node), type: BOOL };
    case 'AEXPR_IN':
      return { node: inList(cx, node), type: BOOL };
    case 'AEXPR_LIKE':
    case 'AEXPR_ILIKE':
      return {
        node: like(cx, kind === 'AEXPR_LIKE' ? 'LIKE' : 'ILIKE', operatorName(node), node),
        type: BOOL,
      };
    case 'AEXPR_BETWEEN':
    case 'AEXPR_NOT_BETWEEN':
    case 'AEXPR_BETWEEN_SYM':
    case 'AEXPR_NOT_BETWEEN_SYM':
      return { node: between(cx, kind, node), type: BOOL };
    default:
      return fail(`${kind.replace('AEXPR_', '').replace(/_/g, ' ')} expressions are not supported`);
  }
}

/** `a op b` or `op b` with an operator named by itself (`=`, `+`, `||`, `@>`, `~~`, …). */
function plainOperator(cx: WhereContext, node: SyntaxNode): Expr {
  const operator = operatorName(node);
  if (!node.lexpr) return prefixOperator(operator, cx.visit(node.rexpr as SyntaxNode));
  const left = cx.visit(node.lexpr as SyntaxNode);
  const right = cx.visit(node.rexpr as SyntaxNode);
  switch (operator) {
    case '=':
    case '<>':
    case '<':
    case '<=':
    case '>':
    case '>=':
      return { node: compare(cx, operator, left, right), type: BOOL };
    case '+':
    case '-':
    case '*':
    case '/':
    case '%':
      return arithmetic(cx.typing, operator, left, right);
    case '||':
      return concat(cx.typing, left, right);
    case '@>':
    case '<@':
    case '&&':
      return { node: arrayOperator(cx, operator, left, right), type: BOOL };
    case '~~':
    case '!~~':
    case '~~*':
    case '!~~*':
      return { node: like(cx, 'LIKE', operator, node), type: BOOL };
    default:
      return fail(`operator ${operator} is not supported`);
  }
}
