// Literals and `$n`. A quoted literal, NULL and `$n` stay untyped for the context to type, as in
// Postgres; numbers and booleans are typed by their spelling, as make_const types them.
import type { ClauseTyping } from './clause-typing.js';
import { fail } from './fail.js';
import { BOOL, type Expr } from './typed-expr.js';
import type { SyntaxNode } from './where-parser.js';

export function constant(typing: ClauseTyping, node: SyntaxNode): Expr {
  if (node.isnull) return { untyped: true, text: null, param: undefined };
  if (node.sval)
    return { untyped: true, text: (node.sval as { sval?: string }).sval ?? '', param: undefined };
  if (node.boolval) {
    const value = (node.boolval as { boolval?: boolean }).boolval === true;
    return typing.settle({ untyped: true, text: value ? 't' : 'f', param: undefined }, BOOL);
  }
  if (node.ival) {
    const value = (node.ival as { ival?: number }).ival ?? 0;
    return typing.literal(String(value), 'int4');
  }
  if (node.fval) {
    // Integers arrive here too when their text is not a plain int4 (-2147483648, after the
    // parser negated 2147483648, or 0x7fff_ffff): Postgres makes them int4 or int8 when they
    // fit, as make_const does.
    const text = (node.fval as { fval: string }).fval;
    const integer = integerLiteral(text);
    if (integer !== undefined && integer >= -(2n ** 31n) && integer < 2n ** 31n) {
      return typing.literal(integer.toString(), 'int4');
    }
    if (integer !== undefined && integer >= -(2n ** 63n) && integer < 2n ** 63n) {
      return typing.literal(integer.toString(), 'int8');
    }
    return typing.literal(text, 'numeric');
  }
  return fail('bit-string constants are not supported');
}

/** `$n`: params[n - 1], typed by its first context (see ClauseTyping.parameter). */
export function paramRef(typing: ClauseTyping, node: SyntaxNode): Expr {
  return typing.parameter((node.number as number | undefined) ?? 0);
}

/** Decimal, hexadecimal, octal or binary integer literal text (Postgres 16+ syntax). */
function integerLiteral(text: string): bigint | undefined {
  const negative = text.startsWith('-');
  const body = (negative ? text.slice(1) : text).replace(/_/g, '');
  if (!/^([0-9]+|0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+)$/.test(body)) return undefined;
  const value = BigInt(body);
  return negative ? -value : value;
}
