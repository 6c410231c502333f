// Explicit casts (`x::type`, `CAST(x AS type)`): to the supported types only, and only between
// types whose conversion the evaluator reproduces exactly, since a cast it computed differently
// from Postgres would let rows into (or out of) a shape that Postgres would filter otherwise.
import {
  castSupported,
  displayTypeName,
  sameType,
  scalar,
  scalarTypeNamed,
  type PgType,
} from './pg-type.js';
import { combinedCollation } from './collation.js';
import { fail } from './fail.js';
import { display, type Typed } from './typed-expr.js';
import type { WhereContext } from './where-context.js';
import type { SyntaxNode } from './where-parser.js';

export function typeCast(cx: WhereContext, node: SyntaxNode): Typed {
  const typeName = node.typeName as SyntaxNode;
  const names = ((typeName.names as SyntaxNode[] | undefined) ?? []).map(
    (n) => (n.String as { sval: string } | undefined)?.sval ?? '',
  );
  const name = names.at(-1) ?? '';
  if (names.length > 2 || (names.length === 2 && names[0] !== 'pg_catalog')) {
    fail(`casts to type ${names.join('.')} are not supported`);
  }
  if (typeName.typmods) fail(`type modifiers in casts (${name}(…)) are not supported`);
  const target = scalarTypeNamed(name);
  if (!target) fail(`casts to type ${name} are not supported`);
  const type: PgType = { scalar: target, array: typeName.arrayBounds !== undefined };
  const varchar = name === 'varchar';
  const argNode = node.arg as SyntaxNode;
  if (argNode.A_ArrayExpr && type.array) {
    return arrayCast(cx, argNode.A_ArrayExpr as SyntaxNode, type, varchar);
  }
  const arg = cx.visit(argNode);
  if (arg.untyped) return cx.typing.settle(arg, type, { varchar });
  return { ...explicitCast(arg, type), varchar };
}

function explicitCast(arg: Typed, type: PgType): Typed {
  if (sameType(arg.type, type)) return arg;
  if (arg.type.array || type.array || !castSupported(arg.type.scalar, type.scalar)) {
    fail(`casting ${display(arg)} to ${displayTypeName(type)} is not supported`);
  }
  return { node: { op: 'cast', type, arg: arg.node }, type };
}

/**
 * `ARRAY[…]::type[]`: Postgres types the constructor from the cast and converts each element
 * to the element type as an explicit cast would (`ARRAY[1.5]::int4[]` rounds, `ARRAY[]` is
 * allowed).
 */
function arrayCast(cx: WhereContext, array: SyntaxNode, type: PgType, varchar: boolean): Typed {
  const elementNodes = (array.elements as SyntaxNode[] | undefined) ?? [];
  if (elementNodes.some((element) => element.A_ArrayExpr)) {
    fail('nested ARRAY[…] constructors are not supported');
  }
  const target = scalar(type.scalar);
  const elements = elementNodes.map((element) => {
    const value = cx.visit(element);
    return value.untyped ? cx.typing.settle(value, target) : explicitCast(value, target);
  });
  return {
    node: { op: 'array', type: type.scalar, elements: elements.map((e) => e.node) },
    type,
    varchar,
    collation: combinedCollation(...elements),
  };
}
