import type pg from 'pg';
import { RAW_TEXT } from '../pg/raw-text.js';
import type { Row, Transaction } from '../pg/transaction.js';
import { quoteTableIdentifier } from '../pg/table-identifier.js';
import { filterSql } from '../where/filter-sql.js';
import { beginSeeing, bindFilter } from './shape-snapshot.js';
import type { ResultRefresh, Shape } from './shape.js';
import { readResults } from './read-subquery-results.js';
import { tupleCondition, type ResultChange } from './subquery-state.js';

/**
 * A transaction changed a table the shape's subqueries read: reads their results again in a
 * snapshot that sees it, and the rows that moved in, in the same snapshot. Rows already in the
 * shape may come again (clients upsert them); transactions this snapshot saw and the stream has
 * not delivered yet bring their changes again, which clients apply as upserts too.
 */
export async function refreshResults(
  client: pg.PoolClient,
  shape: Shape,
  transaction: Transaction,
  timeoutMs: number,
): Promise<ResultRefresh> {
  const state = shape.subqueries!;
  const filter = shape.metadata.filter!;
  const visibility = await beginSeeing(client, [transaction]);
  try {
    // Replication waits for this: a clause too costly to re-read ends the shape, not the stream.
    await client.query("SELECT set_config('statement_timeout', $1, true)", [String(timeoutMs)]);
    await bindFilter(client, filter);
    const results = await readResults(client, state, 'refreshing');
    const change = state.compare(results);
    const rows =
      change.restart || change.moveInTuples.length === 0
        ? []
        : await readMovedIn(client, shape, change);
    await client.query('COMMIT');
    return { results, change, rows, visibility };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** The rows the whole clause admits whose subquery columns hold a tuple that moved in. */
async function readMovedIn(
  client: pg.ClientBase,
  shape: Shape,
  change: ResultChange,
): Promise<Row[]> {
  const conditions: string[] = [];
  const values: (string | null)[][] = [];
  for (const { node, tuples } of change.moveInTuples) {
    const condition = tupleCondition(node, tuples, values.length + 1);
    conditions.push(condition.sql);
    values.push(...condition.values);
  }
  const { definition, filter } = shape.metadata;
  const { rows } = await client.query<Row>({
    text: `SELECT * FROM ${quoteTableIdentifier(definition.table)} WHERE ${filterSql(filter!.root)} AND (${conditions.join(' OR ')})`,
    values,
    types: RAW_TEXT,
  });
  return rows;
}
