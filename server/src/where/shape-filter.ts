import type pg from 'pg';
import { RAW_TEXT } from '../pg/raw-text.js';
import type { TableSchema } from '../pg/table-schema.js';
import { compileNode } from './filter-evaluator.js';
import type { FilterNode, FilterSpec } from './filter-spec.js';
import { sqlTypeName } from './pg-type.js';
import { isEvaluationError } from './pg-values.js';
import { loadWhereTable } from './where-columns.js';
import { compileWhere, type PendingConstant } from './where-compiler.js';
import type { WhereLimits } from './where-limits.js';
import { parseWhereClause } from './where-parser.js';
import { shapeInvalid } from '../errors/sluice-error.js';
import { subqueryTableNames } from './subquery.js';
import type { SubqueryTable } from './where-context.js';

/**
 * Validates a shape's where clause and params against its table and returns the typed clause
 * that filters its snapshot and its changes. Every problem is a SluiceError naming the
 * parameter at fault, raised before any shape exists. Postgres is asked only to read the
 * constants (`'2024-01-01'::date`), with bound parameters: the clause itself is never sent.
 */
export async function compileShapeFilter(
  client: pg.ClientBase,
  schema: TableSchema,
  where: string,
  params: readonly string[],
  limits: WhereLimits,
  loadSubqueryTable?: (table: { schema: string; name: string }) => Promise<TableSchema>,
): Promise<FilterSpec> {
  const tree = await parseWhereClause(where, limits);
  const table = await loadWhereTable(client, schema);
  const subqueryTables = new Map<string, SubqueryTable>();
  for (const name of subqueryTableNames(tree)) {
    if (!loadSubqueryTable) throw shapeInvalid('where', 'subqueries are not supported here');
    const inner = await loadSubqueryTable(name);
    subqueryTables.set(JSON.stringify([name.schema, name.name]), {
      schema: inner.schema,
      name: inner.name,
      oid: inner.oid,
      columns: await loadWhereTable(client, inner),
    });
  }
  const { root, constants, usedParams } = compileWhere(tree, table, params, subqueryTables);
  const unused = params.map((_, i) => i + 1).filter((index) => !usedParams.has(index));
  if (unused.length > 0) {
    throw shapeInvalid(
      'params',
      `${unused.map((i) => `params[${i}]`).join(', ')} ${unused.length === 1 ? 'is' : 'are'} not used by the where clause`,
    );
  }
  await canonicalizeConstants(client, constants);
  checkPlanning(root);
  return { source: where, root };
}

/**
 * Has Postgres read every constant as its type and stores Postgres' own text output of it, so
 * the evaluator only ever reads canonical output ('1e3'::int8 is an error, ' 5 '::int4 is 5,
 * 'tomorrow'::date a date) and the input rules are Postgres' own.
 */
async function canonicalizeConstants(
  client: pg.ClientBase,
  constants: PendingConstant[],
): Promise<void> {
  if (constants.length === 0) return;
  const select = (list: PendingConstant[]) =>
    client.query<unknown[]>({
      text: `SELECT ${list.map((c, i) => `$${i + 1}::${sqlTypeName(c.node.type)}`).join(', ')}`,
      values: list.map((c) => c.text),
      rowMode: 'array',
      types: RAW_TEXT,
    });
  let row: unknown[] | undefined;
  try {
    row = (await select(constants)).rows[0];
  } catch (error) {
    if (!isDataError(error)) throw error;
    // One of them is malformed: ask one at a time to name it.
    for (const constant of constants) {
      await select([constant]).catch((cause: unknown) => {
        if (!isDataError(cause)) throw cause;
        const { node } = constant;
        const message = (cause as Error).message;
        throw node.op === 'param'
          ? shapeInvalid('params', `params[${node.index}]: ${message}`)
          : shapeInvalid('where', message);
      });
    }
    throw error;
  }
  constants.forEach((constant, i) => {
    constant.node.value = row?.[i] as string;
  });
}

/** Invalid text, out of range, bad encoding: SQLSTATE class 22 (data exception). */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('22');
}

/**
 * Postgres computes the parts of a clause that read no column while planning, so `1/0 = x`
 * fails the query whatever the rows: such a clause is refused rather than matching nothing.
 * compileNode folds the same parts (and skips the same ones: `true OR 1/0 = 1` is true).
 */
function checkPlanning(root: FilterNode): void {
  try {
    compileNode(root);
  } catch (error) {
    if (isEvaluationError(error)) throw shapeInvalid('where', error.message);
    throw error;
  }
}
