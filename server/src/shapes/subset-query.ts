import { randomInt } from 'node:crypto';
import type { SubsetSnapshotMetadata } from '@sluice/protocol';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { QueryExecutor } from '../db/query-executor.js';
import { SluiceError, subsetInvalid } from '../errors/sluice-error.js';
import { parseCopyTextBatches } from '../pg/copy-text-parser.js';
import { problemCode } from '../pg/describe-problem.js';
import { quoteIdentifier, quoteTableIdentifier } from '../pg/table-identifier.js';
import type { TablePolicy } from '../pg/table-policy.js';
import { everyNode, type FilterSpec } from '../where/filter-spec.js';
import { orderBySql, parseOrderBy } from '../where/order-by.js';
import { compileShapeFilter } from '../where/shape-filter.js';
import type { WhereLimits } from '../where/where-limits.js';
import { rowOf, snapshotMessageBuilder, taggedInsertMessage } from './change-messages.js';
import type { SubqueryState } from './subquery-state.js';
import type { RecentCommit } from './recent-commits.js';
import type { ShapeDefinition } from './shape-definition.js';
import { planShape } from './shape-plan.js';
import { beginSeeing, bindFilter } from './shape-snapshot.js';

/** A subset of a shape's rows (docs/protocol.md §3.10), its fields validated as text. */
export interface SubsetSpec {
  where: string | undefined;
  /** The values of the subset clause's own `$1…$n`. */
  params: string[];
  limit: number | undefined;
  offset: number | undefined;
  /** As sent: parsed and rebuilt from the allow-list before anything runs. */
  orderBy: string | undefined;
}

/** A subset snapshot: its rows as insert messages (JSON text) and where they were read. */
export interface SubsetResult {
  metadata: SubsetSnapshotMetadata;
  rows: string[];
  schemaHeader: string;
}

export interface SubsetQueriesOptions {
  executor: QueryExecutor;
  tables: TablePolicy;
  whereLimits: WhereLimits;
  /** `statement_timeout` of the query, as for the snapshot of a filtered shape. */
  timeoutMs: number;
  /** Most rows one answer holds (`SLUICE_SUBSET_MAX_ROWS`). */
  maxRows: number;
  /** Commits replication has handed to shapes lately: the query's snapshot must see them. */
  recentCommits(): readonly RecentCommit[];
}

/** Where the subset's `$n` settings start: past any shape's own (keys go up to 999999). */
const SUBSET_PARAM_BASE = 1_000_000;

/**
 * Subset snapshots: a shape's rows that also match the subset's clause, ordered and limited as
 * asked, read in one REPEATABLE READ READ ONLY transaction together with that transaction's
 * snapshot (`pg_current_snapshot()`) and a WAL position past every commit it sees.
 */
export class SubsetQueries {
  readonly #options: SubsetQueriesOptions;

  constructor(options: SubsetQueriesOptions) {
    this.#options = options;
  }

  /**
   * Runs the subset of `definition`. `minLsn`: a replica may answer only once it has replayed
   * this far (the commits a client already holds must be in the snapshot).
   */
  async query(
    definition: ShapeDefinition,
    subset: SubsetSpec,
    minLsn: bigint | undefined,
    tagging?: SubqueryState,
  ): Promise<SubsetResult> {
    const { maxRows, whereLimits, timeoutMs } = this.#options;
    if (subset.limit !== undefined && subset.limit > maxRows) {
      throw subsetInvalid({
        limit: [`is ${subset.limit}; at most ${maxRows} rows are allowed (SLUICE_SUBSET_MAX_ROWS)`],
      });
    }
    // The text alone is checked before any connection is taken.
    const orderBy =
      subset.orderBy === undefined
        ? undefined
        : await asSubsetError(() => parseOrderBy(subset.orderBy!, whereLimits));
    return this.#options.executor.read(
      async (client) => {
        // Planned before the snapshot's transaction: a failing constant fails its statement, and
        // the planner asks again one constant at a time to name it, which an aborted transaction
        // would refuse.
        const plan = await planShape(client, definition, this.#options.tables, whereLimits);
        const subsetFilter =
          subset.where === undefined
            ? undefined
            : await asSubsetError(() =>
                compileShapeFilter(client, plan.schema, subset.where!, subset.params, whereLimits),
              );
        const order =
          orderBy === undefined
            ? ''
            : ` ORDER BY ${await asSubsetError(() => orderBySql(orderBy, plan.context.columns))}`;
        // Read now: commits replicated while planning are seen by the snapshot below too.
        const delivered = this.#options.recentCommits();
        const visibility = await beginSeeing(client, delivered);
        const started = performance.now();
        try {
          await client.query("SELECT set_config('statement_timeout', $1, true)", [
            String(timeoutMs),
          ]);
          // One more row than allowed tells a subset without a limit that is too large.
          const limit = Math.min(subset.limit ?? maxRows + 1, maxRows + 1);
          const where = await filterSql(client, plan.filter, subsetFilter);
          const sql = `COPY (SELECT ${plan.select.map(quoteIdentifier).join(', ')} FROM ${quoteTableIdentifier(definition.table)}${where}${order} LIMIT ${limit}${subset.offset ? ` OFFSET ${subset.offset}` : ''}) TO STDOUT`;
          const mark = randomInt(0, 2 ** 31);
          // A subquery shape's rows carry their tags, so that a later move-out removes them.
          const build =
            tagging?.hasResults === true
              ? (values: readonly (string | null)[]) =>
                  taggedInsertMessage(plan.context, rowOf(plan.select, values), tagging, {
                    snapshot_mark: mark,
                  })
              : snapshotMessageBuilder(plan.context, plan.select, { snapshot_mark: mark });
          const rows: string[] = [];
          for await (const batch of parseCopyTextBatches(client.query(copyTo(sql)))) {
            for (const values of batch) rows.push(build(values));
            if (rows.length > maxRows) {
              throw subsetInvalid({
                where: [
                  `matches more than ${maxRows} rows (SLUICE_SUBSET_MAX_ROWS): narrow it, or page with order_by and limit`,
                ],
              });
            }
          }
          await client.query('COMMIT');
          return {
            metadata: {
              xmin: visibility.xmin,
              xmax: visibility.xmax,
              xip_list: visibility.xip,
              snapshot_mark: mark,
              database_lsn: visibility.lsnBound,
            },
            rows,
            schemaHeader: plan.schemaHeader,
          };
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw queryError(error, performance.now() - started, timeoutMs);
        }
      },
      { minLsn },
    );
  }
}

/** Both clauses, each fully parenthesised, their `$n` values bound in transaction settings. */
async function filterSql(
  client: pg.ClientBase,
  shapeFilter: FilterSpec | undefined,
  subsetFilter: FilterSpec | undefined,
): Promise<string> {
  const parts: string[] = [];
  if (shapeFilter) parts.push(await bindFilter(client, shapeFilter));
  if (subsetFilter) {
    // The subset's `$1…$n` are its own: their settings are numbered apart from the shape's.
    for (const node of everyNode(subsetFilter.root)) {
      if (node.op === 'param') node.index += SUBSET_PARAM_BASE;
    }
    parts.push(await bindFilter(client, subsetFilter));
  }
  return parts.length === 0 ? '' : ` WHERE ${parts.join(' AND ')}`;
}

/** A 400 about the subset's clause or order is listed under `errors.subset`. */
async function asSubsetError<T>(work: () => T | Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof SluiceError && error.details.field !== undefined) {
      throw subsetInvalid({ [error.details.field]: [error.message] });
    }
    throw error;
  }
}

/**
 * What a failed query tells the client: the statement timeout and Postgres refusing the rows
 * (a data error on some row, a column that cannot be ordered) are 400s under the subset.
 */
function queryError(error: unknown, elapsedMs: number, timeoutMs: number): unknown {
  const code = problemCode(error);
  // 57014 is also a cancel (pg_cancel_backend): only one that came at the timeout is ours.
  if (code === '57014' && elapsedMs >= timeoutMs) {
    return subsetInvalid({
      where: [
        `the subset query took longer than ${timeoutMs} ms (SLUICE_FILTERED_SNAPSHOT_TIMEOUT_MS) and was stopped: make it simpler or let it use an index`,
      ],
    });
  }
  if (code === '42883') {
    return subsetInvalid({
      order_by: [`Postgres cannot order by it: ${(error as Error).message}`],
    });
  }
  if (code.startsWith('22')) {
    // Either clause may be the one failing on a row: Postgres' message says which operation.
    return subsetInvalid({
      where: [
        `Postgres failed evaluating the where clauses on the table's rows: ${(error as Error).message}`,
      ],
    });
  }
  return error;
}
