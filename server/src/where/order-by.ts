import { hasSqlDetails, parse } from 'libpg-query';
import { shapeInvalid } from '../errors/sluice-error.js';
import { quoteIdentifier } from '../pg/table-identifier.js';
import { measureSyntaxTree, type WhereLimits } from './where-limits.js';

/** One `ORDER BY` item: a column of the shape and how to sort it. */
export interface OrderByItem {
  column: string;
  direction: 'ASC' | 'DESC' | undefined;
  nulls: 'FIRST' | 'LAST' | undefined;
}

/** The subset field order-by problems are reported under (docs/protocol.md §3.10). */
const FIELD = 'order_by';
/** The prefix the text is parsed behind; error locations count it, as the where parser's do. */
const WRAPPER = 'SELECT 1 ORDER BY ';

const DIRECTIONS = new Map<string, OrderByItem['direction']>([
  ['SORTBY_DEFAULT', undefined],
  ['SORTBY_ASC', 'ASC'],
  ['SORTBY_DESC', 'DESC'],
]);
const NULLS = new Map<string, OrderByItem['nulls']>([
  ['SORTBY_NULLS_DEFAULT', undefined],
  ['SORTBY_NULLS_FIRST', 'FIRST'],
  ['SORTBY_NULLS_LAST', 'LAST'],
]);

/**
 * Parses a subset's `order_by` with Postgres' own grammar (libpg_query) as
 * `SELECT 1 ORDER BY <text>` and keeps only what the allow-list knows: plain column names, quoted
 * or not, each with `ASC`/`DESC` and `NULLS FIRST`/`LAST`. Anything else (expressions, numbers,
 * functions, subqueries, `USING`, `COLLATE`, qualified names, a second statement) is a 400
 * naming it. The text never reaches Postgres: `orderBySql` rebuilds the clause from the items.
 * The where clause's size limits apply to it too.
 */
export async function parseOrderBy(text: string, limits: WhereLimits): Promise<OrderByItem[]> {
  if (text.trim() === '') throw shapeInvalid(FIELD, 'must not be empty');
  if (text.includes('\0')) throw shapeInvalid(FIELD, 'must not contain a NUL character (%00)');
  if (text.length > limits.maxLength) {
    throw shapeInvalid(
      FIELD,
      `is ${text.length} characters long; at most ${limits.maxLength} are allowed (SLUICE_WHERE_MAX_LENGTH)`,
    );
  }
  let tree: { stmts?: { stmt?: Record<string, unknown> }[] };
  try {
    tree = (await parse(WRAPPER + text)) as typeof tree;
  } catch (error) {
    if (hasSqlDetails(error)) {
      throw shapeInvalid(
        FIELD,
        `At location ${error.sqlDetails.cursorPosition}: ${error.sqlDetails.message}`,
      );
    }
    throw error;
  }
  const statements = tree.stmts ?? [];
  const select = statements[0]?.stmt?.SelectStmt as Record<string, unknown> | undefined;
  const onlySort =
    select !== undefined &&
    Object.keys(select).every((key) =>
      ['targetList', 'sortClause', 'limitOption', 'op'].includes(key),
    );
  if (statements.length !== 1 || !onlySort || !Array.isArray(select.sortClause)) {
    throw shapeInvalid(
      FIELD,
      'must be a list of columns with ASC/DESC and NULLS FIRST/LAST (no LIMIT, statements or other clauses)',
    );
  }
  const { nodes, depth } = measureSyntaxTree(select.sortClause);
  if (depth > limits.maxDepth || nodes > limits.maxNodes) {
    throw shapeInvalid(
      FIELD,
      `is too large (${nodes} syntax nodes, ${depth} levels deep; at most ${limits.maxNodes} and ${limits.maxDepth}: SLUICE_WHERE_MAX_NODES, SLUICE_WHERE_MAX_DEPTH)`,
    );
  }
  return (select.sortClause as unknown[]).map((item) => sortItem(item));
}

function sortItem(item: unknown): OrderByItem {
  const sortBy = (item as { SortBy?: Record<string, unknown> }).SortBy;
  if (!sortBy) throw shapeInvalid(FIELD, 'must be a list of columns');
  const direction = String(sortBy.sortby_dir);
  if (!DIRECTIONS.has(direction)) {
    throw shapeInvalid(FIELD, 'only ASC and DESC are supported (not USING)');
  }
  const nulls = String(sortBy.sortby_nulls);
  if (!NULLS.has(nulls)) throw shapeInvalid(FIELD, 'only NULLS FIRST and NULLS LAST are supported');
  return {
    column: columnName(sortBy.node),
    direction: DIRECTIONS.get(direction),
    nulls: NULLS.get(nulls),
  };
}

/** A plain column name; anything else is refused, naming what it is. */
function columnName(node: unknown): string {
  const ref = (node as { ColumnRef?: { fields?: unknown[] } }).ColumnRef;
  const fields = ref?.fields ?? [];
  const name = (fields[0] as { String?: { sval?: unknown } } | undefined)?.String?.sval;
  if (ref && fields.length === 1 && typeof name === 'string') return name;
  if (ref) {
    throw shapeInvalid(
      FIELD,
      "must name columns of the shape's table alone (not table.column or *)",
    );
  }
  const kind = typeof node === 'object' && node !== null ? Object.keys(node)[0] : undefined;
  throw shapeInvalid(
    FIELD,
    `may only name columns, with ASC/DESC and NULLS FIRST/LAST; ${describeNode(kind)} is not allowed`,
  );
}

function describeNode(kind: string | undefined): string {
  switch (kind) {
    case 'A_Const':
      return 'a constant (or a column position)';
    case 'FuncCall':
      return 'a function call';
    case 'SubLink':
      return 'a subquery';
    case 'CollateClause':
      return 'COLLATE';
    case 'TypeCast':
      return 'a cast';
    case 'ParamRef':
      return 'a parameter';
    default:
      return 'an expression';
  }
}

/**
 * `ORDER BY` rebuilt from parsed items, each a column the shape serves (`served`), quoted by
 * Sluice. A column the shape does not serve is a 400 naming it.
 */
export function orderBySql(items: readonly OrderByItem[], served: readonly string[]): string {
  const unknown = items.find((item) => !served.includes(item.column));
  if (unknown) {
    throw shapeInvalid(
      FIELD,
      `unknown column ${quoteIdentifier(unknown.column)}: not served by this shape`,
    );
  }
  return items
    .map(({ column, direction, nulls }) =>
      [quoteIdentifier(column), direction, nulls && `NULLS ${nulls}`].filter(Boolean).join(' '),
    )
    .join(', ');
}
