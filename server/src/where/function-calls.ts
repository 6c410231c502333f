// The functions a clause may call: lower(), upper() and length() on text, and COALESCE (a
// construct of its own in the parse tree, a function to whoever writes the clause). Others are
// refused, since the evaluator reproduces only these.
import { scalar } from './pg-type.js';
import { combinedCollation, rulesOrDefault } from './collation.js';
import { fail } from './fail.js';
import { commonType } from './operand-types.js';
import { functionName } from './syntax-names.js';
import { TEXT, type Typed } from './typed-expr.js';
import type { WhereContext } from './where-context.js';
import type { SyntaxNode } from './where-parser.js';

// What the grammar allows on any call but only aggregate, window or variadic functions take
// (`f(x ORDER BY y)`, `f(x) FILTER (…)`, `f(x) OVER w`, `f(*)`, `f(DISTINCT x)`, `f(VARIADIC a)`):
// none of the functions allowed is one.
const CALL_OPTIONS = [
  'agg_order',
  'agg_filter',
  'over',
  'agg_star',
  'agg_distinct',
  'func_variadic',
];

export function functionCall(cx: WhereContext, node: SyntaxNode): Typed {
  const name = functionName(node);
  for (const option of CALL_OPTIONS) {
    if (node[option])
      fail(`${name}(…) with aggregate, window or variadic options is not supported`);
  }
  const args = ((node.args as SyntaxNode[] | undefined) ?? []).map((arg) => cx.visit(arg));
  if (name !== 'lower' && name !== 'upper' && name !== 'length') {
    fail(
      `function ${name}() is not allowed in where clauses (allowed: lower, upper, length, coalesce)`,
    );
  }
  if (args.length !== 1) fail(`${name}() takes exactly one argument`);
  const arg = cx.typing.textOperand(args[0]!, `${name}()`);
  if (name === 'length') return { node: { op: 'length', arg: arg.node }, type: scalar('int4') };
  const collation = combinedCollation(arg);
  return {
    node: {
      op: 'case_map',
      upper: name === 'upper',
      text: rulesOrDefault(cx.table.defaultText, arg).rules,
      arg: arg.node,
    },
    type: TEXT,
    collation,
  };
}

/** `COALESCE(a, b, …)`: the arguments converted to their common type. */
export function coalesce(cx: WhereContext, node: SyntaxNode): Typed {
  const args = (node.args as SyntaxNode[]).map((arg) => cx.visit(arg));
  const { type, varchar } = commonType(args, 'COALESCE');
  const settled = args.map((arg) => cx.typing.settle(arg, type, { varchar }));
  return {
    node: { op: 'coalesce', type, args: settled.map((a) => a.node) },
    type,
    collation: combinedCollation(...settled),
    varchar,
  };
}
