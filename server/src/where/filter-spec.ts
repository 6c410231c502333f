import type { PgType, ScalarType } from './pg-type.js';

// A where clause after validation and typing: every operator has its operand types settled the
// way Postgres settles them, implicit conversions are explicit `cast` nodes, and constants hold
// Postgres' own text output of their value. It is plain JSON, stored with the shape, and both
// the evaluator and the SQL printer work from it, so the snapshot query and the replication
// filter cannot drift apart.

/** How text compares and changes case under the collation in force (see collation-info.ts). */
export interface TextRules {
  /** Ordering (`<`, BETWEEN) is code point order, as under C, POSIX or C.UTF-8. */
  codePointOrder: boolean;
  /** lower/upper: ASCII letters only, one character at a time, or full Unicode mappings. */
  caseMapping: 'ascii' | 'simple' | 'full';
}

export type CompareOperator = '=' | '<>' | '<' | '<=' | '>' | '>=';
export type ArithmeticOperator = '+' | '-' | '*' | '/' | '%';
export type ArrayOperator = '@>' | '<@' | '&&';

export type FilterNode =
  | { op: 'const'; type: PgType; value: string | null }
  /** `$n`: `value` is Postgres' text output of params[n] read as `type`. */
  | { op: 'param'; index: number; type: PgType; value: string }
  | { op: 'column'; name: string; type: PgType }
  /** A column of a type the evaluator cannot read; only IS [NOT] NULL may look at it. */
  | { op: 'opaque_column'; name: string }
  /**
   * A conversion. `lenient` marks date → timestamp/timestamptz inside a comparison, where
   * Postgres calls a cross-type operator instead of converting: a date past the last timestamp
   * compares above every finite timestamp instead of raising "date out of range".
   */
  | { op: 'cast'; type: PgType; arg: FilterNode; lenient?: true }
  | { op: 'collate'; collation: 'C' | 'POSIX'; arg: FilterNode }
  | {
      op: 'compare';
      operator: CompareOperator;
      domain: PgType;
      text: TextRules | undefined;
      left: FilterNode;
      right: FilterNode;
    }
  | {
      op: 'distinct';
      negated: boolean;
      domain: PgType;
      left: FilterNode;
      right: FilterNode;
    }
  | {
      op: 'arithmetic';
      operator: ArithmeticOperator;
      type: ScalarType;
      left: FilterNode;
      right: FilterNode;
    }
  | { op: 'negate'; type: ScalarType; arg: FilterNode }
  | { op: 'concat'; left: FilterNode; right: FilterNode }
  | { op: 'and' | 'or'; args: FilterNode[] }
  | { op: 'not'; arg: FilterNode }
  | { op: 'is_null'; negated: boolean; arg: FilterNode }
  | { op: 'bool_test'; test: 'true' | 'false' | 'unknown'; negated: boolean; arg: FilterNode }
  | {
      op: 'like';
      caseInsensitive: boolean;
      negated: boolean;
      text: TextRules;
      arg: FilterNode;
      pattern: FilterNode;
      escape: FilterNode | undefined;
    }
  | { op: 'in'; negated: boolean; domain: PgType; arg: FilterNode; list: FilterNode[] }
  /** `arg = ANY(array)`. */
  | { op: 'any'; domain: ScalarType; elementType: ScalarType; arg: FilterNode; array: FilterNode }
  | {
      op: 'array_op';
      operator: ArrayOperator;
      domain: ScalarType;
      left: FilterNode;
      right: FilterNode;
    }
  | { op: 'array'; type: ScalarType; elements: FilterNode[] }
  | { op: 'case_map'; upper: boolean; text: TextRules; arg: FilterNode }
  | { op: 'length'; arg: FilterNode }
  | { op: 'coalesce'; type: PgType; args: FilterNode[] }
  /**
   * `(a, b) IN (SELECT x, y FROM t WHERE …)` (NOT IN is a `not` above it). `id` numbers the
   * shape's subqueries in the order written, nested ones included; `columns` are the outer
   * columns, compared with the inner ones by their text (their types are the same).
   */
  | {
      op: 'subquery';
      id: number;
      columns: ColumnNode[];
      query: SubqueryQuery;
      /** Every outer column is NOT NULL (under NOT IN, NULLs could flip many rows at once). */
      notNull?: true;
    };

export type ColumnNode = Extract<FilterNode, { op: 'column' }>;

/** The inner query of a subquery: plain columns of one table, filtered by its own clause. */
export interface SubqueryQuery {
  table: { schema: string; name: string };
  /** The table's oid, so that its changes reach the shapes that read it. */
  oid: number;
  select: string[];
  filter: FilterNode | undefined;
}

/** A compiled where clause, as stored in shape metadata. */
export interface FilterSpec {
  /** The clause as the client sent it, for logs and messages. */
  source: string;
  root: FilterNode;
}

/** The direct operands of a node. */
export function childNodes(node: FilterNode): FilterNode[] {
  switch (node.op) {
    case 'const':
    case 'param':
    case 'column':
    case 'opaque_column':
      return [];
    case 'cast':
    case 'collate':
    case 'negate':
    case 'not':
    case 'is_null':
    case 'bool_test':
    case 'case_map':
    case 'length':
      return [node.arg];
    case 'compare':
    case 'distinct':
    case 'arithmetic':
    case 'concat':
    case 'array_op':
      return [node.left, node.right];
    case 'and':
    case 'or':
    case 'coalesce':
      return node.args;
    case 'like':
      return node.escape ? [node.arg, node.pattern, node.escape] : [node.arg, node.pattern];
    case 'in':
      return [node.arg, ...node.list];
    case 'any':
      return [node.arg, node.array];
    case 'array':
      return node.elements;
    case 'subquery':
      // The inner clause is about another table: walks of this row's clause stop here
      // (`everyNode` goes inside).
      return node.columns;
  }
}

/** Every node of the clause, inner clauses of subqueries included (for `$n` values). */
export function everyNode(node: FilterNode): FilterNode[] {
  const found: FilterNode[] = [];
  const walk = (current: FilterNode): void => {
    found.push(current);
    childNodes(current).forEach(walk);
    if (current.op === 'subquery' && current.query.filter) walk(current.query.filter);
  };
  walk(node);
  return found;
}

/** The subqueries a clause reads directly (not those nested inside other subqueries). */
export function topSubqueries(node: FilterNode): Extract<FilterNode, { op: 'subquery' }>[] {
  return node.op === 'subquery' ? [node] : childNodes(node).flatMap(topSubqueries);
}
