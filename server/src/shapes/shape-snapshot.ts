import { CONTROL, lsnToBigInt, type SnapshotEndMessage } from '@sluice/protocol';
import type pg from 'pg';
import { to as copyTo, type CopyToStreamQuery } from 'pg-copy-streams';
import { filterSql, paramSettingName } from '../where/filter-sql.js';
import { everyNode, type FilterSpec } from '../where/filter-spec.js';
import {
  rowOf,
  snapshotMessageBuilder,
  taggedInsertMessage,
  type MessageContext,
} from './change-messages.js';
import { readResults } from './read-subquery-results.js';
import type { SubqueryState } from './subquery-state.js';
import { parseCopyTextBatches } from '../pg/copy-text-parser.js';
import type { Shape } from './shape.js';
import { isVisibleTo, type TransactionVisibility } from '../pg/transaction-visibility.js';
import type { RecentCommit } from './recent-commits.js';
import type { RowEncoder } from './row-encoder.js';
import { encodeRows, type EncodedRows } from '../storage/encoded-rows.js';
import { shapeInvalid, SluiceError } from '../errors/sluice-error.js';
import { problemCode } from '../pg/describe-problem.js';
import {
  quoteIdentifier,
  quoteTableIdentifier,
  type TableIdentifier,
} from '../pg/table-identifier.js';

/** How long a snapshot waits for replicated commits to become visible before giving up. */
const VISIBILITY_WAIT_MS = 10_000;

/**
 * Writes a shape's initial rows into its log, then the `snapshot-end` control message in the
 * last snapshot chunk, and seals that chunk so the snapshot's chunks never mix with changes. Runs
 * in one REPEATABLE READ transaction whose snapshot is recorded so that replicated transactions it
 * already contains are not appended again. Rows stream through COPY: the table is never held in
 * memory. With a where clause, the transaction's statements are limited to `filteredTimeoutMs`:
 * such a clause is the client's, and whatever it costs must end soon (docs/security.md, "Where
 * clauses").
 */
export async function takeSnapshot(
  client: pg.PoolClient,
  shape: Shape,
  selectColumns: string[],
  delivered: readonly RecentCommit[],
  filteredTimeoutMs: number,
  encoder: RowEncoder,
): Promise<TransactionVisibility> {
  const { definition, context } = shape.metadata;
  const visibility = await beginSeeing(client, delivered);
  const filtered = shape.metadata.filter !== undefined;
  const started = performance.now();
  try {
    if (filtered) {
      // Transaction-local, so the pooled connection gets its usual timeout back at the end.
      await client.query("SELECT set_config('statement_timeout', $1, true)", [
        String(filteredTimeoutMs),
      ]);
    }
    // A subquery shape's rows are tagged from its subqueries' results in the same snapshot.
    if (shape.subqueries) {
      await bindFilter(client, shape.metadata.filter!);
      shape.recordResults(await readResults(client, shape.subqueries, 'creating'), 0n);
    }
    // Snapshot chunk c holds offset `0_c` on every entry, as Electric numbers snapshot chunks
    // (docs/protocol.md §3.2): the log seals a chunk once it is full and the next row opens c + 1.
    let chunk = 0;
    // One flush at a time runs behind the rows: the next chunk is built while the last sealed
    // one is synced, and each sealed chunk is served as soon as it is durable (logAnswer).
    let flushing: Promise<void> = Promise.resolve();
    if (definition.log === 'full') {
      const rows = {
        table: definition.table,
        select: selectColumns,
        context,
        filter: shape.metadata.filter,
        tagging: shape.subqueries,
      };
      for await (const batch of encodedShapeRows(client, rows, encoder)) {
        const sealed = shape.log.appendSnapshotRows(chunk, batch);
        chunk += sealed;
        if (sealed > 0) {
          // The open chunk is in memory whatever happens: flushing only at seals bounds memory
          // just as well, with one sync per chunk instead of one per batch of rows.
          await flushing;
          flushing = flushSealed(shape);
          // Awaited before the next flush or at the end; until then its failure is not unhandled.
          flushing.catch(() => undefined);
        }
      }
    }
    await flushing;
    await client.query('COMMIT');
    shape.log.append(
      [
        {
          offset: { tx: 0n, op: chunk },
          json: JSON.stringify({
            headers: {
              control: CONTROL.snapshotEnd,
              xmin: visibility.xmin,
              xmax: visibility.xmax,
              xip_list: visibility.xip,
            },
          } satisfies SnapshotEndMessage),
        },
      ],
      { sealChunk: true },
    );
    await flushSealed(shape);
    return visibility;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    // 57014 is also a cancel (pg_cancel_backend): only one that came at the timeout is ours.
    if (filtered && isStatementTimeout(error, performance.now() - started, filteredTimeoutMs)) {
      throw shapeInvalid(
        'where',
        `the snapshot of this where clause took longer than ${filteredTimeoutMs} ms (SLUICE_FILTERED_SNAPSHOT_TIMEOUT_MS) and was stopped: make the clause simpler or let it use an index`,
      );
    }
    throw error;
  }
}

/** Makes what is appended durable, then wakes the readers waiting for a sealed chunk. */
async function flushSealed(shape: Shape): Promise<void> {
  await shape.log.flush();
  shape.notify();
}

function isStatementTimeout(error: unknown, elapsedMs: number, timeoutMs: number): boolean {
  return problemCode(error) === '57014' && elapsedMs >= timeoutMs;
}

/**
 * Opens the snapshot transaction, once its snapshot sees every commit in `delivered`: a commit
 * is sent by Postgres when its WAL is flushed, possibly before it becomes visible (a synchronous
 * standby not answering yet). Such a commit reached the shapes that existed then, so a snapshot
 * without it would lose it for good; it is retaken until it has it, for a bounded time.
 */
export async function beginSeeing(
  client: pg.PoolClient,
  delivered: readonly RecentCommit[],
): Promise<TransactionVisibility> {
  const deadline = Date.now() + VISIBILITY_WAIT_MS;
  for (let pause = 5; ; pause = Math.min(pause * 2, 200)) {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      // The transaction's snapshot is taken by its first statement: this one. On a standby the
      // bound is what it has replayed (it has no WAL insert position).
      const { rows } = await client.query<{ snapshot: string; lsn: string }>(
        `SELECT pg_current_snapshot()::text AS snapshot,
                CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                     ELSE pg_current_wal_insert_lsn() END::text AS lsn`,
      );
      const visibility = parseVisibility(rows[0]?.snapshot ?? '', rows[0]?.lsn ?? '');
      const unseen = delivered.find(
        (commit) => !isVisibleTo(visibility, commit.xid, commit.commitLsn),
      );
      if (!unseen) return visibility;
      await client.query('ROLLBACK');
      if (Date.now() > deadline) {
        throw new SnapshotNotReadyError(
          `transaction ${unseen.xid} was replicated but is still not visible to new snapshots after ${VISIBILITY_WAIT_MS} ms (a synchronous standby not confirming?); retry shortly`,
        );
      }
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

/** The snapshot could not be made consistent with replication yet; the request may be retried. */
export class SnapshotNotReadyError extends SluiceError {
  override readonly name = 'SnapshotNotReadyError';

  constructor(message: string) {
    super('SLUICE_ERR_NOT_READY', message);
  }
}

/** What to read for a shape's rows. */
export interface ShapeRows {
  table: TableIdentifier;
  /** Columns read, in table order. */
  select: string[];
  context: MessageContext;
  filter: FilterSpec | undefined;
  /** A subquery shape's tags, added to each row. */
  tagging?: SubqueryState;
}

/**
 * The shape's current rows as insert messages, in batches as COPY delivers them. Runs inside
 * the caller's transaction (the where clause's `$n` values are transaction-local settings).
 */
export async function* shapeRowBatches(
  client: pg.ClientBase,
  rows: ShapeRows,
): AsyncGenerator<string[]> {
  const copy = await copyShapeRows(client, rows);
  const { tagging, context, select } = rows;
  const buildMessage = tagging
    ? (values: readonly (string | null)[]) =>
        taggedInsertMessage(context, rowOf(select, values), tagging)
    : snapshotMessageBuilder(context, select);
  for await (const batch of parseCopyTextBatches(copy)) {
    yield batch.map(buildMessage);
  }
}

/**
 * The shape's rows as a snapshot appends them: encoded on the row encoder's thread, or, for a
 * subquery shape (whose tags need its subquery state), here.
 */
async function* encodedShapeRows(
  client: pg.ClientBase,
  rows: ShapeRows,
  encoder: RowEncoder,
): AsyncGenerator<EncodedRows> {
  if (rows.tagging) {
    for await (const batch of shapeRowBatches(client, rows)) yield encodeRows(batch);
    return;
  }
  yield* encoder.encode(await copyShapeRows(client, rows), rows.context, rows.select);
}

/** The COPY TEXT stream of the shape's rows, its where clause bound. */
async function copyShapeRows(client: pg.ClientBase, rows: ShapeRows): Promise<CopyToStreamQuery> {
  const where = rows.filter ? ` WHERE ${await bindFilter(client, rows.filter)}` : '';
  const sql = `COPY (SELECT ${rows.select.map(quoteIdentifier).join(', ')} FROM ${quoteTableIdentifier(rows.table)}${where}) TO STDOUT`;
  return client.query(copyTo(sql));
}

/**
 * The where clause as SQL, its `$n` values set (with bound parameters) in transaction-local
 * settings that the SQL reads: COPY cannot take bind parameters itself.
 */
export async function bindFilter(client: pg.ClientBase, filter: FilterSpec): Promise<string> {
  const params = new Map<number, string>();
  for (const node of everyNode(filter.root)) {
    if (node.op === 'param') params.set(node.index, node.value);
  }
  for (const [index, value] of params) {
    await client.query('SELECT set_config($1, $2, true)', [paramSettingName(index), value]);
  }
  return filterSql(filter.root);
}

/** `xmin:xmax:xip1,xip2` plus the WAL position read right after it. */
function parseVisibility(snapshot: string, lsn: string): TransactionVisibility {
  const [xmin, xmax, xip] = snapshot.split(':');
  if (!xmin || !xmax || xip === undefined) throw new Error(`unexpected snapshot "${snapshot}"`);
  return {
    xmin,
    xmax,
    xip: xip === '' ? [] : xip.split(','),
    lsnBound: lsnToBigInt(lsn).toString(),
  };
}
