import { hasSqlDetails, parse } from 'libpg-query';
import { shapeInvalid } from '../errors/sluice-error.js';
import { measureSyntaxTree, type WhereLimits } from './where-limits.js';

/** A node of libpg_query's JSON parse tree: `{ "A_Expr": { … } }`. */
export type SyntaxNode = Record<string, unknown>;

/** The prefix the clause is parsed behind; error locations count it, as Electric's do. */
const WRAPPER = 'SELECT 1 WHERE ';

// Every clause a SELECT may carry besides its target list and WHERE: none may appear, so that
// `true ORDER BY 1` or `true UNION SELECT …` cannot pass as a boolean expression.
export const OTHER_SELECT_PARTS = [
  'distinctClause',
  'intoClause',
  'fromClause',
  'groupClause',
  'havingClause',
  'windowClause',
  'valuesLists',
  'sortClause',
  'limitOffset',
  'limitCount',
  'lockingClause',
  'withClause',
  'larg',
  'rarg',
];

/**
 * Parses a where clause with Postgres' own grammar (libpg_query, compiled to WASM) as
 * `SELECT 1 WHERE <clause>` and returns the expression's parse tree. The text is only parsed,
 * never sent to Postgres. Syntax errors read `At location <N>: <message>` with N the parser's
 * cursor in the wrapped text. A clause beyond `limits` is refused naming the limit, before
 * anything recursive walks its tree.
 */
export async function parseWhereClause(where: string, limits: WhereLimits): Promise<SyntaxNode> {
  if (where.trim() === '') throw shapeInvalid('where', 'must not be empty');
  // libpg_query reads a C string: it would stop at a NUL and filter on what precedes it.
  if (where.includes('\0')) throw shapeInvalid('where', 'must not contain a NUL character (%00)');
  // The length also bounds the nesting libpg_query's own recursive walks see (two characters
  // per level at most, as in `1+1+1…`): the option's maximum keeps it within what they handle.
  if (where.length > limits.maxLength) {
    throw shapeInvalid(
      'where',
      `is ${where.length} characters long; at most ${limits.maxLength} are allowed (SLUICE_WHERE_MAX_LENGTH)`,
    );
  }
  let tree: { stmts?: { stmt?: SyntaxNode }[] };
  try {
    tree = (await parse(WRAPPER + where)) as typeof tree;
  } catch (error) {
    if (hasSqlDetails(error)) {
      throw shapeInvalid(
        'where',
        `At location ${error.sqlDetails.cursorPosition}: ${error.sqlDetails.message}`,
      );
    }
    throw error;
  }
  const statements = tree.stmts ?? [];
  const select = statements[0]?.stmt?.SelectStmt as SyntaxNode | undefined;
  if (statements.length !== 1 || !select) {
    throw shapeInvalid('where', 'must be a single boolean expression, not statements');
  }
  const extra = OTHER_SELECT_PARTS.find((part) => select[part] !== undefined);
  if (extra !== undefined || select.op !== 'SETOP_NONE' || !select.whereClause) {
    throw shapeInvalid(
      'where',
      'must be a single boolean expression (no ORDER BY, LIMIT, UNION, FROM or other clauses)',
    );
  }
  const clause = select.whereClause as SyntaxNode;
  checkSize(clause, limits);
  rejectQuotingTricks(clause, Buffer.from(WRAPPER + where));
  return clause;
}

/** Nesting first: it is what makes a clause costly to evaluate, and what a reader notices. */
function checkSize(clause: SyntaxNode, limits: WhereLimits): void {
  const { nodes, depth } = measureSyntaxTree(clause);
  if (depth > limits.maxDepth) {
    throw shapeInvalid(
      'where',
      `is nested ${depth} levels deep; at most ${limits.maxDepth} are allowed (SLUICE_WHERE_MAX_DEPTH)`,
    );
  }
  if (nodes > limits.maxNodes) {
    throw shapeInvalid(
      'where',
      `has ${nodes} syntax nodes; at most ${limits.maxNodes} are allowed (SLUICE_WHERE_MAX_NODES)`,
    );
  }
}

/**
 * Dollar-quoted strings and Unicode escapes (`U&'…'`, `U&"…"`) are valid SQL but are the usual
 * tools of injection through a filter; no honest where clause needs them, so they are refused.
 * The parse tree no longer shows how a constant or name was spelt: the text at its location
 * (a byte offset) does. Every located node is checked: constants, columns, functions, types.
 */
function rejectQuotingTricks(node: unknown, source: Buffer): void {
  if (Array.isArray(node)) {
    for (const item of node) rejectQuotingTricks(item, source);
    return;
  }
  if (typeof node !== 'object' || node === null) return;
  const location = (node as { location?: unknown }).location;
  if (typeof location === 'number' && location >= 0) {
    const start = source.subarray(location, location + 3).toString();
    if (/^\$[^0-9]/.test(start)) {
      throw shapeInvalid('where', 'dollar-quoted strings are not supported');
    }
    if (/^u&/i.test(start)) {
      throw shapeInvalid('where', 'Unicode escapes (U&…) are not supported');
    }
  }
  for (const value of Object.values(node)) rejectQuotingTricks(value, source);
}
