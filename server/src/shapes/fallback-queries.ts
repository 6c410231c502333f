import { createHash, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { CONTROL, type SnapshotEndMessage } from '@sluice/protocol';
import type { QueryExecutor } from '../db/query-executor.js';
import type { TablePolicy } from '../pg/table-policy.js';
import type { SluiceMetrics } from '../status/sluice-metrics.js';
import type pg from 'pg';
import { definitionKey, tagSalt, type ShapeDefinition } from './shape-definition.js';
import { topSubqueries, type FilterSpec } from '../where/filter-spec.js';
import { readResults } from './read-subquery-results.js';
import { SubqueryState } from './subquery-state.js';
import type { WhereLimits } from '../where/where-limits.js';
import { planShape, whereEvaluationError } from './shape-plan.js';
import { bindFilter, shapeRowBatches } from './shape-snapshot.js';
import { SnapshotWatch } from './snapshot-watch.js';

/** A shape's rows read straight from Postgres while replication is down (docs/protocol.md §7). */
export interface FallbackResult {
  /** Unique per result; recognisable, so a request naming it is known for what it is. */
  handle: string;
  /** Every row as an insert message, comma-separated JSON, serialised once for every request. */
  rows: Buffer;
  schemaHeader: string;
  /**
   * The `snapshot-end` control message of the query's own transaction snapshot: a client that
   * awaits a transaction id learns from it that the rows include that transaction's writes.
   */
  snapshotEnd: string;
  /** That snapshot as Postgres prints it (`xmin:xmax:xip,…`, see `snapshotText`). */
  snapshot: string;
  /** `performance.now()` when the query ended. */
  finishedAt: number;
}

export interface FallbackQueriesOptions {
  /** Fallback queries read the replica first (docs/protocol.md §7). */
  executor: QueryExecutor;
  /** How long one result answers identical requests (the fallback cache window). */
  maxAgeMs: number;
  /** Distinct fallback queries allowed to run at once. */
  maxConcurrent: number;
  /** Bytes of finished results kept for their window, across all shapes (0: none kept). */
  maxCacheBytes: number;
  metrics: SluiceMetrics;
  /** Fallback rows obey the table policy too (docs/security.md, "Table policy"). */
  tables: TablePolicy;
  /** And the where clause limits of every shape. */
  whereLimits: WhereLimits;
}

const FALLBACK_MARK = '-fallback-';
/** Ends a fallback handle made for a result: the fingerprint of the result's snapshot. */
const SNAPSHOT_MARK = /-s([0-9a-f]{12})$/;
/**
 * How often held requests on fallback handles have the database's snapshot read (one query for
 * all of them): a write during an outage reaches those clients within about this much plus one
 * fallback query, well inside the 5 s a TanStack DB mutation waits for its transaction id.
 */
const CHANGE_CHECK_MS = 1_000;

/** Whether a handle was made for a fallback result (by this server or an earlier run). */
export function isFallbackHandle(handle: string): boolean {
  return handle.includes(FALLBACK_MARK);
}

/**
 * A fresh fallback handle for a definition; one made for a result carries the fingerprint of the
 * result's snapshot, so a request naming it tells which state of the database its client holds,
 * even after a restart.
 */
export function newFallbackHandle(definition: ShapeDefinition, snapshot?: string): string {
  const digest = createHash('sha256').update(definitionKey(definition)).digest('hex').slice(0, 8);
  const seen = snapshot === undefined ? '' : `-s${snapshotFingerprint(snapshot)}`;
  return `${digest}${FALLBACK_MARK}${Date.now()}${randomBytes(2).toString('hex')}${seen}`;
}

/**
 * A snapshot as Postgres prints it (`xmin:xmax:xip1,xip2`, in-progress ids ascending), from its
 * parts: so that a fallback handle made for rows read elsewhere (a subset snapshot) carries the
 * same fingerprint as one made from `pg_current_snapshot()::text`.
 */
export function snapshotText(snapshot: {
  xmin: string;
  xmax: string;
  xip_list: readonly string[];
}): string {
  const xip = [...snapshot.xip_list].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1));
  return `${snapshot.xmin}:${snapshot.xmax}:${xip.join(',')}`;
}

function snapshotFingerprint(snapshot: string): string {
  return createHash('sha256').update(snapshot).digest('hex').slice(0, 12);
}

/**
 * Runs fallback shape queries with single flight: identical requests arriving while one runs, or
 * within the cache window after it, get its result, so a storm costs the database one query per
 * window. Distinct queries beyond the limit are refused (`undefined`) instead of queueing on
 * the database. Finished results are kept in a cache bounded in bytes (lru-cache): many distinct
 * shapes cost at most that much memory, the least recently asked for going first.
 */
export class FallbackQueries {
  readonly #options: FallbackQueriesOptions;
  readonly #running = new Map<string, Promise<FallbackResult>>();
  readonly #finished: LRUCache<string, FallbackResult> | undefined;
  readonly #watch: SnapshotWatch;

  constructor(options: FallbackQueriesOptions) {
    this.#options = options;
    this.#watch = new SnapshotWatch(
      () =>
        options.executor.read(async (client) => {
          const { rows } = await client.query<{ snapshot: string }>(
            'SELECT pg_current_snapshot()::text AS snapshot',
          );
          return snapshotText(parseSnapshot(rows[0]?.snapshot ?? ''));
        }),
      CHANGE_CHECK_MS,
    );
    // lru-cache takes neither a zero size nor a zero ttl (that means "forever"): nothing is kept.
    if (options.maxCacheBytes > 0 && options.maxAgeMs > 0) {
      this.#finished = new LRUCache({
        maxSize: options.maxCacheBytes,
        sizeCalculation: (result) =>
          Math.max(
            1,
            result.rows.length +
              result.schemaHeader.length +
              result.handle.length +
              result.snapshotEnd.length +
              result.snapshot.length,
          ),
        ttl: options.maxAgeMs,
      });
    }
  }

  get(definition: ShapeDefinition): Promise<FallbackResult> | undefined {
    const key = definitionKey(definition);
    const shared = this.#running.get(key) ?? this.#cached(key);
    if (shared) {
      this.#options.metrics.fallbackCoalesced.inc();
      return shared;
    }
    if (this.#running.size >= this.#options.maxConcurrent) {
      this.#options.metrics.fallbackRejected.inc();
      return undefined;
    }
    this.#options.metrics.fallbackQueries.inc();
    const result = this.#query(definition);
    this.#running.set(key, result);
    // A failed query is not remembered: the next request tries again.
    void result
      .then(
        (finished) => this.#finished?.set(key, finished),
        () => undefined,
      )
      .finally(() => this.#running.delete(key));
    return result;
  }

  /**
   * Forgets the finished results (replication is back: none of them will be asked for again);
   * queries still running finish for the requests waiting on them.
   */
  clear(): void {
    this.#finished?.clear();
  }

  /**
   * Resolves true once the database is seen past the snapshot of the result a fallback handle
   * was made for (a transaction ended since: the rows may have changed), false when `until` is
   * aborted first. A handle made for no result never resolves true.
   */
  async changedSince(handle: string, until: AbortSignal): Promise<boolean> {
    const fingerprint = SNAPSHOT_MARK.exec(handle)?.[1];
    if (fingerprint === undefined) {
      if (until.aborted) return false;
      return new Promise((resolve) =>
        until.addEventListener('abort', () => resolve(false), { once: true }),
      );
    }
    // The client received that result before asking, so a reading started after the call is
    // later than its snapshot: different means a transaction ended in between.
    for (;;) {
      const reading = await this.#watch.next(until);
      if (reading === undefined) return false;
      if (snapshotFingerprint(reading.snapshot) !== fingerprint) return true;
    }
  }

  #cached(key: string): Promise<FallbackResult> | undefined {
    const finished = this.#finished?.get(key);
    if (!finished) return undefined;
    // A reading taken after the result that differs from its snapshot means clients were told the
    // rows may have changed: they come back for newer ones, which this result is not.
    const reading = this.#watch.latest();
    if (
      reading &&
      reading.startedAt > finished.finishedAt &&
      reading.snapshot !== finished.snapshot
    ) {
      this.#finished?.delete(key);
      return undefined;
    }
    return Promise.resolve(finished);
  }

  /**
   * One REPEATABLE READ transaction: the plan and the rows agree. The executor re-runs it whole
   * on a fresh connection when it fails transiently (nothing has reached a client yet), and
   * bounds a query that gets no answer (the statement timeout, then the connection is closed).
   */
  #query(definition: ShapeDefinition): Promise<FallbackResult> {
    return this.#options.executor.read(async (client) => {
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        // The transaction's snapshot is taken by its first statement: this one.
        const seen = await client.query<{ snapshot: string }>(
          'SELECT pg_current_snapshot()::text AS snapshot',
        );
        const seenParts = parseSnapshot(seen.rows[0]?.snapshot ?? '');
        const snapshot = snapshotText(seenParts);
        const { tables, whereLimits } = this.#options;
        const plan = await planShape(client, definition, tables, whereLimits);
        const parts: Buffer[] = [];
        if (definition.log === 'full') {
          const rows = {
            table: definition.table,
            select: plan.select,
            context: plan.context,
            filter: plan.filter,
            tagging: await fallbackTagging(client, definition, plan.filter),
          };
          for await (const batch of shapeRowBatches(client, rows)) {
            if (batch.length > 0)
              parts.push(Buffer.from(`${parts.length > 0 ? ',' : ''}${batch.join(',')}`));
          }
        }
        await client.query('COMMIT');
        return {
          handle: newFallbackHandle(definition, snapshot),
          rows: Buffer.concat(parts),
          schemaHeader: plan.schemaHeader,
          snapshotEnd: JSON.stringify({
            headers: { control: CONTROL.snapshotEnd, ...seenParts },
          } satisfies SnapshotEndMessage),
          snapshot,
          finishedAt: performance.now(),
        };
      } catch (error) {
        throw whereEvaluationError(definition, error);
      }
    });
  }
}

/** The parts of a snapshot printed as `xmin:xmax:xip1,xip2`. */
function parseSnapshot(text: string): Omit<SnapshotEndMessage['headers'], 'control'> {
  const [xmin, xmax, xip] = text.split(':');
  if (!xmin || !xmax || xip === undefined) throw new Error(`unexpected snapshot "${text}"`);
  return { xmin, xmax, xip_list: xip === '' ? [] : xip.split(',') };
}

/**
 * A subquery shape's rows carry their tags in fallback mode too, from its subqueries' results
 * in the same snapshot: a client that goes back to the live log afterwards keeps these rows,
 * and the move-outs it then reads must find them (docs/protocol.md §13).
 */
async function fallbackTagging(
  client: pg.ClientBase,
  definition: ShapeDefinition,
  filter: FilterSpec | undefined,
): Promise<SubqueryState | undefined> {
  if (!filter || topSubqueries(filter.root).length === 0) return undefined;
  const tagging = new SubqueryState(tagSalt(definition), filter.root);
  await bindFilter(client, filter);
  tagging.setResults(await readResults(client, tagging, 'creating'));
  return tagging;
}
