import { castSupported } from './pg-type.js';
import type { ClauseTyping } from './clause-typing.js';
import { combinedCollation } from './collation.js';
import { fail } from './fail.js';
import { display, TEXT, type Expr, type Typed } from './typed-expr.js';

/**
 * `a || b` is text concatenation when one side is text (or untyped): the other side is then
 * converted with its output function (anytextcat), which is exact for integers, uuid and
 * boolean ('true'). Two non-text operands have no such operator; arrays concatenate arrays.
 */
export function concat(typing: ClauseTyping, left: Expr, right: Expr): Typed {
  const isText = (e: Expr) => e.untyped || (!e.type.array && e.type.scalar === 'text');
  if (!isText(left) && !isText(right)) {
    const [l, r] = [left as Typed, right as Typed];
    if (l.type.array || r.type.array) fail('array concatenation (||) is not supported');
    fail(`operator does not exist: ${display(l)} || ${display(r)}`);
  }
  const operand = (expr: Expr): Typed => {
    const t = typing.typed(expr);
    if (t.type.array) fail('array concatenation (||) is not supported');
    if (t.type.scalar === 'text') return t;
    if (!castSupported(t.type.scalar, 'text')) {
      fail(`|| with ${display(t)} is not supported (only text, integers, uuid and boolean)`);
    }
    return { node: { op: 'cast', type: TEXT, arg: t.node }, type: TEXT };
  };
  const l = operand(left);
  const r = operand(right);
  return {
    node: { op: 'concat', left: l.node, right: r.node },
    type: TEXT,
    collation: combinedCollation(l, r),
  };
}
