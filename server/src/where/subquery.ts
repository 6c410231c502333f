// Subqueries in a where clause: `col IN (SELECT x FROM t WHERE …)` and `(a, b) IN (SELECT x, y
// FROM …)`, NOT IN being a NOT above them. The inner query is held to the same subset as the
// clause itself: plain columns of one table, its own clause typed like any other (and may hold
// subqueries in turn). Their result is compared with the outer columns by text, so only types
// whose equality is equality of their text are accepted.
import { booleanOperand } from './boolean-expressions.js';
import { columnReference } from './column-reference.js';
import { fail } from './fail.js';
import type { ColumnNode } from './filter-spec.js';
import { isInteger, type PgType } from './pg-type.js';
import { BOOL, display, type Typed } from './typed-expr.js';
import type { WhereContext } from './where-context.js';
import { OTHER_SELECT_PARTS, type SyntaxNode } from './where-parser.js';

/** More subqueries than this in one clause are refused: each one is a query per change. */
export const MAX_SUBQUERIES = 8;

// SELECT parts a subquery may not have: it must be a plain projection of one table.
const OTHER_SUBQUERY_PARTS = OTHER_SELECT_PARTS.filter((part) => part !== 'fromClause');

/** Types `… IN (SELECT …)`. */
export function subquery(cx: WhereContext, node: SyntaxNode): Typed {
  if (node.subLinkType !== 'ANY_SUBLINK') {
    fail(
      `${String(node.subLinkType).replace('_SUBLINK', '')} subqueries are not supported: use col IN (SELECT …) or (a, b) IN (SELECT …)`,
    );
  }
  const operator = (node.operName as SyntaxNode[] | undefined)?.map(
    (name) => (name.String as { sval: string } | undefined)?.sval,
  );
  if (operator && operator.join('.') !== '=') {
    fail(`only = ANY (SELECT …) and IN (SELECT …) are supported, not ${operator.join('.')} ANY`);
  }
  const columns = outerColumns(cx, node.testexpr as SyntaxNode);
  const select = (node.subselect as SyntaxNode | undefined)?.SelectStmt as SyntaxNode | undefined;
  if (!select) fail('a subquery must be a SELECT');
  const extra = OTHER_SUBQUERY_PARTS.find((part) => select[part] !== undefined);
  if (extra !== undefined || select.op !== 'SETOP_NONE') {
    fail(
      'a subquery must be SELECT <columns> FROM <table> [WHERE …]: no DISTINCT, GROUP BY, ORDER BY, LIMIT, UNION, WITH or other clauses',
    );
  }
  const inner = innerTable(cx, select.fromClause as SyntaxNode[] | undefined);
  const innerCx = cx.within(inner.columns);
  const targets = (select.targetList as SyntaxNode[]).map((target) => {
    const value = (target.ResTarget as SyntaxNode | undefined)?.val as SyntaxNode | undefined;
    if (!value?.ColumnRef) fail('a subquery may only select plain columns');
    return columnReference(inner.columns, value.ColumnRef as SyntaxNode);
  });
  if (targets.length !== columns.length) {
    fail(
      `subquery has ${targets.length === 1 ? '1 column' : `${targets.length} columns`} but ${columns.length} ${columns.length === 1 ? 'is' : 'are'} compared with it`,
    );
  }
  targets.forEach((target, i) => checkComparable(columns[i]!, target));
  const filter = select.whereClause
    ? booleanOperand(innerCx, select.whereClause as SyntaxNode, 'WHERE')
    : undefined;
  const id = cx.nextSubqueryId();
  if (id >= MAX_SUBQUERIES) fail(`at most ${MAX_SUBQUERIES} subqueries are allowed in a clause`);
  const notNull = columns.every(
    (column) => cx.table.columns.get((column.node as ColumnNode).name)?.notNull === true,
  );
  return {
    node: {
      op: 'subquery',
      id,
      ...(notNull ? { notNull: true as const } : {}),
      columns: columns.map((column) => column.node as ColumnNode),
      query: {
        table: { schema: inner.schema, name: inner.name },
        oid: inner.oid,
        select: targets.map((target) => (target.node as ColumnNode).name),
        filter: filter,
      },
    },
    type: BOOL,
  };
}

/** The left side: a column, or a row of columns. */
function outerColumns(cx: WhereContext, node: SyntaxNode): Typed[] {
  if (node.ColumnRef) return [columnReference(cx.table, node.ColumnRef as SyntaxNode)];
  const row = node.RowExpr as SyntaxNode | undefined;
  const args = (row?.args as SyntaxNode[] | undefined) ?? [];
  if (args.length > 0 && args.every((arg) => arg.ColumnRef)) {
    return args.map((arg) => columnReference(cx.table, arg.ColumnRef as SyntaxNode));
  }
  return fail('the left side of IN (SELECT …) must be a column or a row of columns, as (a, b)');
}

/** The one table a subquery reads, loaded beforehand (`subqueryTableNames`). */
function innerTable(cx: WhereContext, from: SyntaxNode[] | undefined) {
  const range = from?.length === 1 ? (from[0]!.RangeVar as SyntaxNode | undefined) : undefined;
  if (!range) fail('a subquery must read exactly one table, without joins or functions');
  if (range.alias) fail('a subquery table may not have an alias');
  const table = cx.subqueryTables.get(tableName(range));
  // Loaded from the same walk of the tree: missing only if that walk and this one disagree.
  if (!table) throw new Error(`subquery table ${tableName(range)} was not loaded`);
  return table;
}

/** `schema.name` of a RangeVar, the schema `public` when not written. */
export function tableName(range: SyntaxNode): string {
  return JSON.stringify([(range.schemaname as string | undefined) ?? 'public', range.relname]);
}

/**
 * The tables the clause's subqueries read, nested ones included, as `tableName` keys, before
 * anything is typed (loading them asks the catalog).
 */
export function subqueryTableNames(tree: unknown): { schema: string; name: string }[] {
  const found = new Map<string, { schema: string; name: string }>();
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(walk);
    if (typeof value !== 'object' || value === null) return;
    const link = (value as SyntaxNode).SubLink as SyntaxNode | undefined;
    const from = ((link?.subselect as SyntaxNode | undefined)?.SelectStmt as SyntaxNode | undefined)
      ?.fromClause as SyntaxNode[] | undefined;
    for (const item of from ?? []) {
      const range = item.RangeVar as SyntaxNode | undefined;
      if (range) {
        found.set(tableName(range), {
          schema: (range.schemaname as string | undefined) ?? 'public',
          name: range.relname as string,
        });
      }
    }
    Object.values(value).forEach(walk);
  };
  walk(tree);
  return [...found.values()];
}

/**
 * The result is compared with the outer columns by text (a set of the inner values): types
 * must be the same, integers of any width aside, and text must compare byte for byte.
 */
function checkComparable(outer: Typed, inner: Typed): void {
  const a = outer.type;
  const b = inner.type;
  const comparable =
    !a.array &&
    !b.array &&
    ((isInteger(a.scalar) && isInteger(b.scalar)) || (a.scalar === b.scalar && textEquality(a)));
  if (!comparable) {
    fail(
      `subquery column of type ${display(inner)} cannot be compared with column of type ${display(outer)}: use columns of the same integer, text, uuid, boolean or date type`,
    );
  }
  for (const side of [outer, inner]) {
    if (side.collation && !side.collation.deterministic) {
      fail(
        `subquery columns with the nondeterministic collation ${side.collation.name} are not supported`,
      );
    }
  }
}

/** Types whose values are equal exactly when Postgres' text of them is. */
function textEquality(type: PgType): boolean {
  return ['text', 'uuid', 'bool', 'date', 'int2', 'int4', 'int8'].includes(type.scalar);
}
