import { arrayOf } from './pg-type.js';
import { combinedCollation } from './collation.js';
import { fail } from './fail.js';
import { commonType } from './operand-types.js';
import type { Typed } from './typed-expr.js';
import type { WhereContext } from './where-context.js';
import type { SyntaxNode } from './where-parser.js';

/**
 * `ARRAY[a, b, …]` without a cast: typed from its elements (their common type, as Postgres
 * picks it), so an empty one has no type, and one-dimensional only, the arrays the evaluator
 * compares. A cast constructor (`ARRAY[…]::int4[]`) is typed by its cast (type-cast.ts).
 */
export function arrayConstructor(cx: WhereContext, node: SyntaxNode): Typed {
  const elements = ((node.elements as SyntaxNode[] | undefined) ?? []).map((element) =>
    cx.visit(element),
  );
  if (elements.length === 0) fail('an empty ARRAY[] needs a cast to say its type');
  const { type, varchar } = commonType(elements, 'ARRAY');
  if (type.array) fail('nested ARRAY[…] constructors are not supported');
  const settled = elements.map((e) => cx.typing.settle(e, type, { varchar }));
  return {
    node: { op: 'array', type: type.scalar, elements: settled.map((e) => e.node) },
    type: arrayOf(type.scalar),
    varchar,
    collation: combinedCollation(...settled),
  };
}
