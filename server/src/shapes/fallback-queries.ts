import { createHash, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { QueryExecutor } from '../db/query-executor.js';
import type { TablePolicy } from '../pg/table-policy.js';
import type { SluiceMetrics } from '../status/sluice-metrics.js';
import { definitionKey, type ShapeDefinition } from './shape-definition.js';
import type { WhereLimits } from '../where/where-limits.js';
import { planShape, whereEvaluationError } from './shape-plan.js';
import { shapeRowBatches } from './shape-snapshot.js';

/** A shape's rows read straight from Postgres while replication is down (docs/protocol.md §7). */
export interface FallbackResult {
  /** Unique per result; recognisable, so a request naming it is known for what it is. */
  handle: string;
  /** Every row as an insert message, comma-separated JSON, serialised once for every request. */
  rows: Buffer;
  schemaHeader: string;
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

/** Whether a handle was made for a fallback result (by this server or an earlier run). */
export function isFallbackHandle(handle: string): boolean {
  return handle.includes(FALLBACK_MARK);
}

/** A fresh fallback handle for a definition. */
export function newFallbackHandle(definition: ShapeDefinition): string {
  const digest = createHash('sha256').update(definitionKey(definition)).digest('hex').slice(0, 8);
  return `${digest}${FALLBACK_MARK}${Date.now()}${randomBytes(2).toString('hex')}`;
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

  constructor(options: FallbackQueriesOptions) {
    this.#options = options;
    // lru-cache takes neither a zero size nor a zero ttl (that means "forever"): nothing is kept.
    if (options.maxCacheBytes > 0 && options.maxAgeMs > 0) {
      this.#finished = new LRUCache({
        maxSize: options.maxCacheBytes,
        sizeCalculation: (result) =>
          Math.max(1, result.rows.length + result.schemaHeader.length + result.handle.length),
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

  #cached(key: string): Promise<FallbackResult> | undefined {
    const finished = this.#finished?.get(key);
    return finished && Promise.resolve(finished);
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
        const { tables, whereLimits } = this.#options;
        const plan = await planShape(client, definition, tables, whereLimits);
        const parts: Buffer[] = [];
        if (definition.log === 'full') {
          const rows = {
            table: definition.table,
            select: plan.select,
            context: plan.context,
            filter: plan.filter,
          };
          for await (const batch of shapeRowBatches(client, rows)) {
            if (batch.length > 0)
              parts.push(Buffer.from(`${parts.length > 0 ? ',' : ''}${batch.join(',')}`));
          }
        }
        await client.query('COMMIT');
        return {
          handle: newFallbackHandle(definition),
          rows: Buffer.concat(parts),
          schemaHeader: plan.schemaHeader,
        };
      } catch (error) {
        throw whereEvaluationError(definition, error);
      }
    });
  }
}
