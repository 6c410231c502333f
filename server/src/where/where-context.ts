import type { ClauseTyping } from './clause-typing.js';
import type { Expr } from './typed-expr.js';
import type { WhereTable } from './where-columns.js';
import type { SyntaxNode } from './where-parser.js';

/** A table a subquery reads, loaded (and checked against the table policy) before compiling. */
export interface SubqueryTable {
  schema: string;
  name: string;
  oid: number;
  columns: WhereTable;
}

/**
 * What every part of the where compiler works with while it types one clause. `visit` types a
 * sub-expression by its node kind; it is handed down rather than imported, since the dispatch
 * (where-compiler.ts) imports every part and an import back would be a cycle. `within` is the
 * same for a subquery's clause, which reads another table; `subqueryTables` are those tables,
 * by `schema.name`, and `nextSubqueryId` numbers the subqueries of the whole clause.
 */
export interface WhereContext {
  readonly table: WhereTable;
  readonly typing: ClauseTyping;
  readonly visit: (node: SyntaxNode) => Expr;
  readonly within: (table: WhereTable) => WhereContext;
  readonly subqueryTables: ReadonlyMap<string, SubqueryTable>;
  readonly nextSubqueryId: () => number;
}
