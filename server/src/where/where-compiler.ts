// The where compiler: types a clause's parse tree the way Postgres would type it, into the
// FilterNode tree that both the evaluator and the SQL printer work from. This module only
// dispatches on the node kind; each construct is typed by the module named after it, and the
// typing of untyped constants and parameters is ClauseTyping's.
import { arrayConstructor } from './array-constructor.js';
import { booleanOperand, booleanTest, boolExpr, nullTest } from './boolean-expressions.js';
import { ClauseTyping, type PendingConstant } from './clause-typing.js';
import { collateClause } from './collation.js';
import { columnReference } from './column-reference.js';
import { constant, paramRef } from './constant-expressions.js';
import { fail } from './fail.js';
import { coalesce, functionCall } from './function-calls.js';
import { operatorExpression } from './operator-expression.js';
import { typeCast } from './type-cast.js';
import type { Expr } from './typed-expr.js';
import type { FilterNode } from './filter-spec.js';
import type { WhereTable } from './where-columns.js';
import { subquery } from './subquery.js';
import type { SubqueryTable, WhereContext } from './where-context.js';
import type { SyntaxNode } from './where-parser.js';

export type { PendingConstant } from './clause-typing.js';

// Names for parse-tree nodes outside the supported subset, so the 400 says what was refused.
const CONSTRUCTS: Record<string, string> = {
  CaseExpr: 'CASE expressions',
  RowExpr: 'row constructors',
  SQLValueFunction: 'CURRENT_DATE, CURRENT_USER and similar functions',
  A_Indirection: 'subscripts and field selection',
  MinMaxExpr: 'GREATEST and LEAST',
  XmlExpr: 'XML functions',
  GroupingFunc: 'GROUPING',
  NullIfExpr: 'NULLIF',
  NamedArgExpr: 'named arguments',
  A_Star: '*',
};

/**
 * Types a where clause's parse tree against a table, the way Postgres would type it, and
 * refuses everything outside the supported subset with a message naming the construct.
 * Constants are returned in `constants` for Postgres to canonicalise before use.
 */
export function compileWhere(
  tree: SyntaxNode,
  table: WhereTable,
  params: readonly string[],
  subqueryTables: ReadonlyMap<string, SubqueryTable> = new Map(),
): { root: FilterNode; constants: PendingConstant[]; usedParams: Set<number> } {
  const typing = new ClauseTyping(params);
  let subqueries = 0;
  const context = (current: WhereTable): WhereContext => {
    const cx: WhereContext = {
      table: current,
      typing,
      visit: (node) => visit(cx, node),
      within: context,
      subqueryTables,
      nextSubqueryId: () => subqueries++,
    };
    return cx;
  };
  const root = booleanOperand(context(table), tree, 'WHERE');
  return { root, constants: typing.constants, usedParams: typing.usedParams };
}

function visit(cx: WhereContext, node: SyntaxNode): Expr {
  const [kind, body] = Object.entries(node)[0] ?? ['', {}];
  const n = body as SyntaxNode;
  switch (kind) {
    case 'ColumnRef':
      return columnReference(cx.table, n);
    case 'A_Const':
      return constant(cx.typing, n);
    case 'ParamRef':
      return paramRef(cx.typing, n);
    case 'TypeCast':
      return typeCast(cx, n);
    case 'A_Expr':
      return operatorExpression(cx, n);
    case 'BoolExpr':
      return boolExpr(cx, n);
    case 'NullTest':
      return nullTest(cx, n);
    case 'BooleanTest':
      return booleanTest(cx, n);
    case 'FuncCall':
      return functionCall(cx, n);
    case 'CoalesceExpr':
      return coalesce(cx, n);
    case 'A_ArrayExpr':
      return arrayConstructor(cx, n);
    case 'CollateClause':
      return collateClause(cx, n);
    case 'SubLink':
      return subquery(cx, n);
    default:
      return fail(
        `${CONSTRUCTS[kind] ?? kind} ${CONSTRUCTS[kind] ? 'are' : 'is'} not supported in where clauses`,
      );
  }
}
