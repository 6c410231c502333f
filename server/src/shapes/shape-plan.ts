import type pg from 'pg';
import type { FilterSpec } from '../where/filter-spec.js';
import { disjunctiveForm } from '../where/disjunctive-form.js';
import { compileShapeFilter } from '../where/shape-filter.js';
import type { WhereLimits } from '../where/where-limits.js';
import type { MessageContext } from './change-messages.js';
import type { ShapeDefinition } from './shape-definition.js';
import { rowKeyColumns } from './row-key.js';
import { quoteIdentifier } from '../pg/table-identifier.js';
import { buildSchemaHeader, type TableSchema } from '../pg/table-schema.js';
import { loadServedTable } from '../pg/served-table.js';
import type { TablePolicy } from '../pg/table-policy.js';
import { shapeInvalid, SluiceError } from '../errors/sluice-error.js';

/** What serving a definition takes, resolved against the catalog (and checked) once. */
export interface ShapePlan {
  schema: TableSchema;
  context: MessageContext;
  /** Columns the queries read, in table order: the served ones plus the key. */
  select: string[];
  schemaHeader: string;
  /** Columns as the catalog describes them, compared with replication's Relation messages. */
  columnSignature: string;
  filter: FilterSpec | undefined;
  /** Tables the where clause's subqueries read (to publish, and whose changes concern it). */
  dependencies: TableSchema[];
}

/**
 * Resolves a definition: the table must be inside the table policy, exist and be readable, the
 * columns must be served by replication and include the key, and the where clause must
 * type-check. Each problem is a `SluiceError` naming the parameter at fault.
 */
export async function planShape(
  client: pg.ClientBase,
  definition: ShapeDefinition,
  tables: TablePolicy,
  whereLimits: WhereLimits,
): Promise<ShapePlan> {
  const schema = await loadServedTable(client, definition.table, tables);
  const published = schema.columns.filter((column) => !column.generated);
  const columns = selectColumns(schema, definition.columns);
  const keyColumns = rowKeyColumns({ primaryKey: schema.primaryKey, columns: published });
  const dependencies: TableSchema[] = [];
  const loadSubqueryTable = async (table: { schema: string; name: string }) => {
    const inner = await loadServedTable(client, table, tables).catch((error: unknown) => {
      // The table policy and catalog name `table`; here the table is the where clause's.
      throw error instanceof SluiceError ? shapeInvalid('where', error.message) : error;
    });
    dependencies.push(inner);
    return inner;
  };
  const filter = await compileFilter(client, schema, definition, whereLimits, loadSubqueryTable);
  // A clause with subqueries is also taken apart into disjunctive form (its tags): refused here,
  // before anything is made for the shape, when that form is too large.
  if (filter && dependencies.length > 0) disjunctiveForm(filter.root);
  return {
    dependencies,
    schema,
    context: {
      schema: schema.schema,
      table: schema.name,
      columns,
      keyColumns,
      replica: definition.replica,
    },
    // A subquery shape tags each row from the clause's columns too: it reads every column.
    select: schema.columns
      .filter((column) => !column.generated)
      .map((column) => column.name)
      .filter(
        (name) => dependencies.length > 0 || columns.includes(name) || keyColumns.includes(name),
      ),
    schemaHeader: buildSchemaHeader(schema, columns),
    columnSignature: JSON.stringify(
      published.map((column) => [column.name, column.typeOid, column.typmod]),
    ),
    filter,
  };
}

/** The served columns in table order, checked against the table (docs/protocol.md §2 `columns`). */
function selectColumns(schema: TableSchema, requested: string[] | undefined): string[] {
  const published = schema.columns
    .filter((column) => !column.generated)
    .map((column) => column.name);
  if (requested === undefined) return published;
  for (const name of requested) {
    const column = schema.columns.find((c) => c.name === name);
    if (!column) throw shapeInvalid('columns', `unknown column ${quoteIdentifier(name)}`);
    if (column.generated) {
      throw shapeInvalid(
        'columns',
        `generated column ${quoteIdentifier(name)} is not replicated by Postgres`,
      );
    }
  }
  for (const key of schema.primaryKey) {
    if (!requested.includes(key)) {
      throw shapeInvalid(
        'columns',
        `must include every primary key column: missing ${quoteIdentifier(key)}`,
      );
    }
  }
  return published.filter((name) => requested.includes(name));
}

/** The shape's typed where clause; its problems are 400s under `where` or `params`. */
async function compileFilter(
  client: pg.ClientBase,
  schema: TableSchema,
  definition: ShapeDefinition,
  whereLimits: WhereLimits,
  loadSubqueryTable: (table: { schema: string; name: string }) => Promise<TableSchema>,
): Promise<FilterSpec | undefined> {
  if (definition.where === undefined) return undefined;
  return compileShapeFilter(
    client,
    schema,
    definition.where,
    definition.params ?? [],
    whereLimits,
    loadSubqueryTable,
  );
}

/**
 * Postgres could not evaluate the clause on some row (division by zero, overflow): the query
 * fails, as it would for anyone running it, and so does the request (a 400 under `where`).
 */
export function whereEvaluationError(definition: ShapeDefinition, error: unknown): unknown {
  const code = (error as { code?: unknown }).code;
  if (definition.where === undefined || typeof code !== 'string' || !code.startsWith('22'))
    return error;
  return shapeInvalid(
    'where',
    `Postgres failed evaluating the where clause on the table's rows: ${(error as Error).message}`,
  );
}
