import { createHash } from 'node:crypto';
import { loadModule, parseSync } from 'libpg-query';
import { LRUCache } from 'lru-cache';
import { measureSyntaxTree } from './where-limits.js';

// Shapes are looked up synchronously on every request: the parser's WASM is loaded once, here.
await loadModule();

/** The parser's own safe bound (SLUICE_WHERE_MAX_LENGTH's maximum); longer clauses are a 400. */
const PARSE_MAX_LENGTH = 16_384;
/**
 * SLUICE_WHERE_MAX_DEPTH's maximum, plus the SELECT the clause is parsed in: deeper clauses are a
 * 400, and printing their tree would overflow the stack.
 */
const TREE_MAX_DEPTH = 256 + 1;

/**
 * Text `parseWhereClause` refuses whatever its parse (NUL, dollar quoting, Unicode escapes): such
 * a clause keys on its text, so it can never reach a shape made for an acceptable spelling.
 * `$1` (a parameter) is fine.
 */
const REFUSED_TEXT = /\0|\$(?![0-9])|u&/i;

/**
 * Parsing costs up to milliseconds for a long clause and every request looks its shape up:
 * recent clauses' canonical forms are remembered (bounded in characters).
 */
const remembered = new LRUCache<string, string>({
  maxSize: 8 * 1024 * 1024,
  sizeCalculation: (value, where) => where.length + value.length,
});

/**
 * The where clause as Postgres' grammar reads it, without how it was spelt: a digest of its
 * libpg_query parse tree with every source location removed. `id>1`, `id > 1`, `(id>1)` and
 * `ID > 1` read alike (spacing, keyword and unquoted-name case, redundant parentheses), while any
 * other constant, name, operator or clause does not. Undefined for text that is no valid
 * clause, or that the parser refuses anyway: that keys on its own text and fails when planned.
 */
export function canonicalWhere(where: string): string | undefined {
  if (where.length > PARSE_MAX_LENGTH || REFUSED_TEXT.test(where)) return undefined;
  let canonical = remembered.get(where);
  if (canonical === undefined) {
    let tree: unknown;
    try {
      // Parsed as parseWhereClause does; a clause hiding other SELECT parts keeps them in its tree.
      tree = parseSync(`SELECT 1 WHERE ${where}`);
    } catch {
      return undefined;
    }
    if (measureSyntaxTree(tree).depth > TREE_MAX_DEPTH) return undefined;
    const text = JSON.stringify(tree, (key, value: unknown) =>
      key === 'location' ? undefined : value,
    );
    canonical = createHash('sha256').update(text).digest('hex');
    remembered.set(where, canonical);
  }
  return canonical;
}
