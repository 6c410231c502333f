import { fail } from './fail.js';
import { TEXT, type Typed } from './typed-expr.js';
import type { WhereTable } from './where-columns.js';
import type { SyntaxNode } from './where-parser.js';

/**
 * A column, by its plain name: the one place a clause reads the row. Generated columns are
 * refused because logical replication does not carry their values, and columns of types the
 * evaluator cannot read may only be the operand of IS [NOT] NULL (`nullTest`). Text columns
 * carry their collation, implicitly.
 */
export function columnReference(table: WhereTable, node: SyntaxNode, nullTest = false): Typed {
  const fields = (node.fields as SyntaxNode[] | undefined) ?? [];
  if (fields.length !== 1 || !fields[0]?.String) {
    fail('qualified column references are not supported: use the plain column name');
  }
  const name = (fields[0].String as { sval: string }).sval;
  const info = table.columns.get(name);
  if (!info) fail(`column "${name}" does not exist in ${table.name}`);
  if (info.generated) {
    fail(`generated column "${name}" is not supported: Postgres does not replicate it`);
  }
  if (!info.type) {
    if (!nullTest) {
      fail(
        `column "${name}" has type ${info.typeName}, which where clauses can only test with IS [NOT] NULL`,
      );
    }
    // The type is never looked at: IS NULL is the only operator reached.
    return { node: { op: 'opaque_column', name }, type: TEXT };
  }
  const type = info.type;
  return {
    node: { op: 'column', name, type },
    type,
    varchar: info.varchar,
    collation:
      type.scalar === 'text'
        ? {
            rules: info.text,
            deterministic: info.deterministic,
            explicit: false,
            name: info.collation,
            isDefault: info.defaultCollation,
          }
        : undefined,
  };
}
