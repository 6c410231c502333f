// What the where compiler hands from one part to another while it types a clause. An operand is
// either typed, or a literal or `$n` still untyped: in Postgres `'42'` and `$1` have no type of
// their own until the operator or function they meet gives them one, so the compiler must carry
// them untyped until then.
import type { FilterNode, TextRules } from './filter-spec.js';
import { displayTypeName, scalar, type PgType } from './pg-type.js';

/** A literal or `$n` whose type the context decides, as Postgres types `'42'` or `$1`. */
export interface Untyped {
  untyped: true;
  text: string | null;
  param: number | undefined;
}

/**
 * A typed expression; `collation` is set for text that carries one (a column or COLLATE).
 * `varchar` says Postgres' type is varchar (or varchar[]): the same as text to every operator
 * but the array ones, for which varchar[] and text[] are different types.
 */
export interface Typed {
  untyped?: false;
  node: FilterNode;
  type: PgType;
  collation?: Collation;
  varchar?: boolean;
}

/** A collation an expression carries: `explicit` from COLLATE, else a column's (implicit). */
export interface Collation {
  rules: TextRules;
  deterministic: boolean;
  explicit: boolean;
  name: string;
  /** The database default, which any other implicit collation overrides. */
  isDefault?: boolean;
}

export type Expr = Typed | Untyped;

export const BOOL = scalar('bool');
export const TEXT = scalar('text');

/** Postgres' name of a typed expression's type, for messages (`character varying[]`). */
export function display(expr: Typed): string {
  if (!expr.varchar) return displayTypeName(expr.type);
  return expr.type.array ? 'character varying[]' : 'character varying';
}
