import type pg from 'pg';
import { shapeInvalid } from '../errors/sluice-error.js';
import { SubqueryResult, type Tuple } from './subquery-result.js';
import { MAX_SUBQUERY_VALUES, subqueryResultSql, type SubqueryState } from './subquery-state.js';

/**
 * Reads each subquery's result in the caller's transaction (its `$n` values bound). One row
 * past the limit is read so that a result over it is known: refused at creation, and at a
 * refresh the shape starts over (SubqueryState.compare).
 */
export async function readResults(
  client: pg.ClientBase,
  state: SubqueryState,
  purpose: 'creating' | 'refreshing',
): Promise<Map<number, SubqueryResult>> {
  const results = new Map<number, SubqueryResult>();
  for (const node of state.subqueries) {
    const { rows } = await client.query<Tuple>({
      text: `${subqueryResultSql(node)} LIMIT ${MAX_SUBQUERY_VALUES + 1}`,
      rowMode: 'array',
    });
    if (purpose === 'creating' && rows.length > MAX_SUBQUERY_VALUES) {
      throw shapeInvalid(
        'where',
        `a subquery returns more than ${MAX_SUBQUERY_VALUES} rows; Sluice holds at most that many per subquery`,
      );
    }
    results.set(node.id, new SubqueryResult(node.columns.length, rows));
  }
  return results;
}
