import type { ClauseTyping } from './clause-typing.js';
import type { Expr } from './typed-expr.js';
import type { WhereTable } from './where-columns.js';
import type { SyntaxNode } from './where-parser.js';

/**
 * What every part of the where compiler works with while it types one clause. `visit` types a
 * sub-expression by its node kind; it is handed down rather than imported, since the dispatch
 * (where-compiler.ts) imports every part and an import back would be a cycle.
 */
export interface WhereContext {
  readonly table: WhereTable;
  readonly typing: ClauseTyping;
  readonly visit: (node: SyntaxNode) => Expr;
}
