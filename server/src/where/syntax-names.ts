// Operator and function names as the parse tree spells them: qualified names are accepted only
// in pg_catalog, so that `public.lower()` or `OPERATOR(myschema.=)` cannot stand in for the
// built-in one the evaluator reproduces.
import { fail } from './fail.js';
import type { SyntaxNode } from './where-parser.js';

export function operatorName(node: SyntaxNode): string {
  const names = (node.name as SyntaxNode[]).map((n) => (n.String as { sval: string }).sval);
  if (names.length > 2 || (names.length === 2 && names[0] !== 'pg_catalog')) {
    fail(`operator ${names.join('.')} is not supported`);
  }
  return names.at(-1) ?? '';
}

export function functionName(node: SyntaxNode): string {
  const names = (node.funcname as SyntaxNode[]).map((n) => (n.String as { sval: string }).sval);
  if (names.length > 2 || (names.length === 2 && names[0] !== 'pg_catalog')) {
    fail(`function ${names.join('.')}() is not allowed in where clauses`);
  }
  return names.at(-1) ?? '';
}
