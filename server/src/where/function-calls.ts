// The functions a clause may call: lower(), upper() and length() on text, concat(), and COALESCE
// (a construct of its own in the parse tree, a function to whoever writes the clause). Others are
// refused, since the evaluator reproduces only these.
import { castSupported, scalar } from './pg-type.js';
import { combinedCollation, rulesOrDefault } from './collation.js';
import { fail } from './fail.js';
import { commonType } from './operand-types.js';
import { functionName } from './syntax-names.js';
import { display, TEXT, type Typed } from './typed-expr.js';
import type { FilterNode } from './filter-spec.js';
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
  if (name === 'concat') return concat(cx, args);
  if (name !== 'lower' && name !== 'upper' && name !== 'length') {
    fail(
      `function ${name}() is not allowed in where clauses (allowed: lower, upper, length, concat, coalesce)`,
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

const EMPTY_TEXT: FilterNode = { op: 'const', type: TEXT, value: '' };

/**
 * `concat(a, b, …)`: the arguments' text output joined, NULLs left out (so never NULL). Text,
 * integers and uuid are taken, whose output a cast to text reproduces; boolean is not (concat
 * writes `t`, a cast `true`), nor types whose output depends on formatting rules.
 */
function concat(cx: WhereContext, args: ReturnType<WhereContext['visit']>[]): Typed {
  if (args.length === 0) fail('concat() needs at least one argument');
  const parts = args.map((arg) => {
    const t = cx.typing.typed(arg);
    if (
      t.type.array ||
      (t.type.scalar !== 'text' &&
        (t.type.scalar === 'bool' || !castSupported(t.type.scalar, 'text')))
    ) {
      fail(`concat() with ${display(t)} is not supported (only text, integers and uuid)`);
    }
    const text: FilterNode =
      t.type.scalar === 'text' ? t.node : { op: 'cast', type: TEXT, arg: t.node };
    const node: FilterNode = { op: 'coalesce', type: TEXT, args: [text, EMPTY_TEXT] };
    return { typed: t, node };
  });
  const joined = parts
    .slice(1)
    .reduce<FilterNode>((left, part) => ({ op: 'concat', left, right: part.node }), parts[0]!.node);
  return { node: joined, type: TEXT, collation: combinedCollation(...parts.map((p) => p.typed)) };
}
