// The typing state of one clause. Untyped constants and parameters take the type their context
// asks for, and each one settled is kept: Postgres itself reads their text as that type later
// (shape-filter.ts), so that the evaluator never has to copy Postgres' input rules.
import type { FilterNode } from './filter-spec.js';
import {
  castSupported,
  displayTypeName,
  sameType,
  scalar,
  type PgType,
  type ScalarType,
} from './pg-type.js';
import { fail } from './fail.js';
import { display, TEXT, type Expr, type Typed, type Untyped } from './typed-expr.js';
import { shapeInvalid } from '../errors/sluice-error.js';

/** A constant whose text Postgres must read (and print back) as `type`. */
export interface PendingConstant {
  node: Extract<FilterNode, { op: 'const' | 'param' }>;
  text: string;
}

/** How an untyped operand settles: `lenient` for operands of comparisons (see FilterNode). */
export interface Settling {
  lenient?: boolean;
  varchar?: boolean;
}

/**
 * Settles operands to the types their context decides, and records what that leaves for later:
 * the constants Postgres must read, in the order they were settled, and the parameters used.
 * One per compileWhere call, since a parameter's type is decided once per clause.
 */
export class ClauseTyping {
  readonly constants: PendingConstant[] = [];
  readonly usedParams = new Set<number>();
  // The type each `$n` got where the context first typed it: like Postgres, later uses of the
  // same parameter are of that type, not untyped again.
  readonly #paramTypes = new Map<number, { type: PgType; varchar: boolean }>();

  constructor(private readonly params: readonly string[]) {}

  /** `expr` as `type`: an untyped one takes the type, a typed one is converted implicitly. */
  settle(expr: Expr, type: PgType, how: Settling = {}): Typed {
    if (!expr.untyped) return this.convert(expr, type, how.lenient === true);
    const varchar = how.varchar === true && type.scalar === 'text';
    if (expr.text === null) {
      return { node: { op: 'const', type, value: null }, type, varchar };
    }
    if (expr.param !== undefined && !this.#paramTypes.has(expr.param)) {
      this.#paramTypes.set(expr.param, { type, varchar });
    }
    const node: PendingConstant['node'] =
      expr.param === undefined
        ? { op: 'const', type, value: expr.text }
        : { op: 'param', index: expr.param, type, value: expr.text };
    this.constants.push({ node, text: expr.text });
    return { node, type, varchar };
  }

  /**
   * An implicit conversion Postgres would apply to reach `type`. In a comparison (`lenient`)
   * a date meets a timestamp through a cross-type operator, which does not raise for dates
   * past the last timestamp.
   */
  convert(expr: Typed, type: PgType, lenient = false): Typed {
    if (sameType(expr.type, type)) return expr;
    if (expr.type.array || type.array || !castSupported(expr.type.scalar, type.scalar)) {
      fail(`cannot use ${display(expr)} as ${displayTypeName(type)}`);
    }
    const node: FilterNode =
      lenient && expr.type.scalar === 'date'
        ? { op: 'cast', type, arg: expr.node, lenient: true }
        : { op: 'cast', type, arg: expr.node };
    return { node, type, collation: expr.collation };
  }

  /** `expr` where nothing asks for a type: Postgres reads an unknown left alone as text. */
  typed(expr: Expr): Typed {
    return expr.untyped ? this.settle(expr, TEXT) : expr;
  }

  /** A literal whose spelling gives its type (`42` is int4, `4.2` numeric). */
  literal(text: string, type: ScalarType): Typed {
    return this.settle({ untyped: true, text, param: undefined }, scalar(type));
  }

  /** An operand that must be text (LIKE, lower(), COLLATE): untyped ones become text. */
  textOperand(expr: Expr, what: string): Typed {
    const t = this.typed(expr);
    if (t.type.array || t.type.scalar !== 'text') fail(`${what} needs text, not ${display(t)}`);
    return t;
  }

  /** `$n`, untyped until a context types it; its value is checked and its use recorded. */
  parameter(index: number): Expr {
    const value = this.params[index - 1];
    if (value === undefined) {
      throw shapeInvalid('params', `$${index} is used but params[${index}] is not given`);
    }
    this.usedParams.add(index);
    const untyped: Untyped = { untyped: true, text: value, param: index };
    const known = this.#paramTypes.get(index);
    return known ? this.settle(untyped, known.type, { varchar: known.varchar }) : untyped;
  }
}
