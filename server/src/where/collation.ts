// Which collation text carries, derived at every node as Postgres derives it, since a node may
// be refused for its collations even when it compares no text. The evaluator reproduces only
// what the collation in force says of ordering and case mapping (TextRules), so text that would
// meet under two unrelated collations is refused rather than guessed at.
import type { TextRules } from './filter-spec.js';
import { fail } from './fail.js';
import { TEXT, type Collation, type Typed } from './typed-expr.js';
import type { WhereContext } from './where-context.js';
import type { SyntaxNode } from './where-parser.js';

/**
 * The collation operands combine to, derived as Postgres does at every node, whether or not
 * the node compares text: an explicit collation wins, and two different explicit ones are an
 * error; otherwise a non-default one wins over the default. Two different non-default
 * implicit ones leave Postgres without a collation, refused here.
 */
export function combinedCollation(...exprs: Typed[]): Collation | undefined {
  const collations = exprs.flatMap((e) => (e.collation ? [e.collation] : []));
  const explicit = collations.filter((c) => c.explicit);
  const candidates = explicit.length > 0 ? explicit : collations.filter((c) => !c.isDefault);
  const first = candidates[0];
  const other = candidates.find((c) => c.name !== first?.name);
  if (first && other) {
    if (explicit.length > 0) {
      fail(`collation mismatch between explicit collations "${first.name}" and "${other.name}"`);
    }
    fail(
      `combining text of collations "${first.name}" and "${other.name}" is not supported: add COLLATE`,
    );
  }
  return first ?? collations[0];
}

/**
 * The rules text is compared or case-mapped under: the operands' combined collation, or the
 * database default (`defaultText`) when none of them carries one.
 */
export function rulesOrDefault(
  defaultText: TextRules,
  ...exprs: Typed[]
): { rules: TextRules; deterministic: boolean; name: string } {
  const collation = combinedCollation(...exprs);
  return {
    rules: collation?.rules ?? defaultText,
    deterministic: collation?.deterministic ?? true,
    name: collation?.name ?? 'default',
  };
}

/**
 * `x COLLATE "C"`: only C and POSIX, whose rules (code point order, ASCII case mapping) hold
 * whatever the server's locales, so that a clause means the same on every database.
 */
export function collateClause(cx: WhereContext, node: SyntaxNode): Typed {
  const names = (node.collname as SyntaxNode[]).map((c) => (c.String as { sval: string }).sval);
  const name = names.at(-1) ?? '';
  if ((names.length > 1 && names[0] !== 'pg_catalog') || (name !== 'C' && name !== 'POSIX')) {
    fail(`collation "${names.join('.')}" is not supported (only "C" and "POSIX")`);
  }
  const arg = cx.typing.textOperand(cx.visit(node.arg as SyntaxNode), 'COLLATE');
  return {
    node: { op: 'collate', collation: name as 'C', arg: arg.node },
    type: TEXT,
    varchar: arg.varchar,
    collation: {
      rules: { codePointOrder: true, caseMapping: 'ascii' },
      deterministic: true,
      explicit: true,
      name,
    },
  };
}
