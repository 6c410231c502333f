import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import { lsnToBigInt } from '@sluice/protocol';
import type { QueryExecutor } from '../db/query-executor.js';
import type { RecentCommit } from './recent-commits.js';
import type { RelationInfo } from '../pg/transaction.js';
import { writeFileAtomically } from '../storage/chunk-file.js';
import type { ChunkCache } from '../storage/chunk-cache.js';
import { ShapeLog } from '../storage/shape-log.js';
import { definitionKey, type ShapeDefinition } from './shape-definition.js';
import { ShapeRouter } from './shape-router.js';
import { takeSnapshot } from './shape-snapshot.js';
import { Shape, type RowChange, type ShapeMetadata } from './shape.js';
import { whereEvaluationError, planShape } from './shape-plan.js';
import { quoteTableIdentifier } from '../pg/table-identifier.js';
import { publishTable } from '../pg/publication.js';
import type { WhereLimits } from '../where/where-limits.js';
import { bulkhead, type BulkheadPolicy } from 'cockatiel';
import type { TablePolicy } from '../pg/table-policy.js';

export interface ShapeRegistryOptions {
  storageDir: string;
  chunkBytes: number;
  /** Sealed chunks kept in memory, shared by every shape's log. */
  chunkCache: ChunkCache;
  executor: QueryExecutor;
  publicationName: string;
  /** Which tables shapes may read, and whether Sluice readies them for replication itself. */
  tables: TablePolicy;
  /** How large a shape's where clause may be. */
  whereLimits: WhereLimits;
  /**
   * Shapes created (planned and snapshotted) at once, below the pool's size: the others wait,
   * so creating shapes never takes every connection from catalog and fallback queries.
   */
  maxConcurrentSnapshots: number;
  /** `statement_timeout` of the snapshot of a shape with a where clause. */
  filteredSnapshotTimeoutMs: number;
  /** Commits replication has already handed to shapes, recently (see `RecentCommits`). */
  recentCommits(): readonly RecentCommit[];
  log: FastifyBaseLogger;
}

const META_FILE = 'shape.json';

/**
 * Every shape the server holds, indexed by handle, by definition and by table. Creating a shape
 * adds its table to the publication, registers it (so changes are buffered from that moment)
 * and then takes the snapshot. Shapes and their logs survive restarts in `storageDir`.
 */
export class ShapeRegistry {
  readonly #byHandle = new Map<string, Shape>();
  readonly #byKey = new Map<string, Shape>();
  readonly #byRelation = new Map<number, Set<Shape>>();
  readonly #router = new ShapeRouter();
  readonly #creating = new Map<string, Promise<Shape>>();
  readonly #creations: BulkheadPolicy;
  readonly #options: ShapeRegistryOptions;
  readonly #shapesDir: string;

  constructor(options: ShapeRegistryOptions) {
    this.#options = options;
    this.#shapesDir = join(options.storageDir, 'shapes');
    // An unbounded queue: the admission gate (SLUICE_MAX_CONCURRENT_INITIAL) bounds the waiters.
    this.#creations = bulkhead(options.maxConcurrentSnapshots, Infinity);
  }

  /** Reopens the shapes of a previous run; ones whose snapshot never finished are dropped. */
  async load(): Promise<void> {
    await mkdir(this.#shapesDir, { recursive: true });
    for (const handle of await readdir(this.#shapesDir)) {
      const dir = join(this.#shapesDir, handle);
      const metadata = await readFile(join(dir, META_FILE), 'utf8')
        .then((text) => JSON.parse(text) as ShapeMetadata)
        .catch(() => undefined);
      // A shape of a table the policy no longer serves goes: its clients refetch and get a 400.
      const refused = metadata && this.#options.tables.refusal(metadata.definition.table);
      if (!metadata?.snapshotComplete || refused !== undefined) {
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      // A log that cannot be recovered costs its clients one refetch, not the whole server.
      const { chunkBytes, chunkCache } = this.#options;
      const log = await ShapeLog.open(dir, { chunkBytes, chunkCache }).catch((error: unknown) => {
        this.#options.log.error({ err: error, handle }, 'discarding an unreadable shape log');
        return undefined;
      });
      if (!log) {
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      this.#add(new Shape(metadata, log));
    }
    this.#options.log.info({ shapes: this.#byHandle.size }, 'shapes loaded');
  }

  /** How many shapes the server holds. */
  get size(): number {
    return this.#byHandle.size;
  }

  get(handle: string): Shape | undefined {
    return this.#byHandle.get(handle);
  }

  find(definition: ShapeDefinition): Shape | undefined {
    return this.#byKey.get(definitionKey(definition));
  }

  /** The shapes a change may concern (each still applies its own where clause). */
  candidates(change: RowChange): Iterable<Shape> {
    return this.#router.candidates(change);
  }

  /** The shape for a definition, created (snapshot included) when there is none yet. */
  async getOrCreate(definition: ShapeDefinition): Promise<Shape> {
    const key = definitionKey(definition);
    const existing = this.#byKey.get(key);
    if (existing?.ready) return existing;
    let creating = this.#creating.get(key);
    if (!creating) {
      creating = this.#creations
        .execute(() => this.#create(definition))
        .finally(() => this.#creating.delete(key));
      this.#creating.set(key, creating);
    }
    return creating;
  }

  async delete(shape: Shape): Promise<void> {
    if (this.#byHandle.get(shape.handle) !== shape) return;
    this.#byHandle.delete(shape.handle);
    this.#byKey.delete(definitionKey(shape.metadata.definition));
    this.#byRelation.get(shape.metadata.relationOid)?.delete(shape);
    this.#router.remove(shape);
    shape.markDeleted();
    await shape.log.destroy();
  }

  /** Continuity broke for one table (truncated, columns changed): its shapes start over. */
  async rotateRelation(relationOid: number, reason: string): Promise<void> {
    const shapes = [...(this.#byRelation.get(relationOid) ?? [])];
    if (shapes.length === 0) return;
    this.#options.log.warn({ relationOid, shapes: shapes.length, reason }, 'rotating shapes');
    for (const shape of shapes) await this.delete(shape);
  }

  /** Continuity broke for everything (new slot, other system): every shape starts over. */
  async rotateAll(reason: string): Promise<void> {
    if (this.#byHandle.size === 0) return;
    this.#options.log.warn({ shapes: this.#byHandle.size, reason }, 'rotating every shape');
    for (const shape of [...this.#byHandle.values()]) await this.delete(shape);
  }

  /**
   * True when replication describes the table differently from when its shapes were made: other
   * columns, or another name (renamed, or a new table took the old name).
   */
  relationChanged(relation: RelationInfo): boolean {
    const shapes = this.#byRelation.get(relation.oid);
    const first = shapes?.values().next().value;
    if (first === undefined) return false;
    const { context, columnSignature } = first.metadata;
    return (
      columnSignature !== replicationSignature(relation) ||
      context.schema !== relation.schema ||
      context.table !== relation.name
    );
  }

  /**
   * The name a shape was made for must still mean the same table: a table dropped and created
   * again, or renamed, has another oid (or name), and its shapes start over. Checked for every
   * initial request, where serving the old table's rows would be a wrong answer.
   */
  async stillCurrent(shape: Shape): Promise<boolean> {
    // The primary: a replica lagging behind a DROP TABLE would still call the old table current.
    const { rows } = await this.#options.executor.primary((client) =>
      client.query<{ oid: number | null }>('SELECT to_regclass($1)::oid AS oid', [
        quoteTableIdentifier(shape.metadata.definition.table),
      ]),
    );
    if (Number(rows[0]?.oid ?? 0) === shape.metadata.relationOid) return true;
    await this.rotateRelation(shape.metadata.relationOid, 'table dropped, recreated or renamed');
    return false;
  }

  /**
   * One catalog query for every shape's table: tables dropped or renamed since their shapes were
   * made rotate them, so clients following them get a 409 rather than waiting on a table that
   * is gone.
   */
  async verifyRelations(): Promise<void> {
    const oids = [...this.#byRelation.keys()];
    if (oids.length === 0) return;
    // A periodic sweep: a replica a little behind only delays it.
    const { rows } = await this.#options.executor.read((client) =>
      client.query<{ oid: number; schema: string | null; name: string | null }>(
        `SELECT r.oid::int AS oid, n.nspname AS schema, c.relname AS name
           FROM unnest($1::oid[]) AS r(oid)
           LEFT JOIN pg_class c ON c.oid = r.oid
           LEFT JOIN pg_namespace n ON n.oid = c.relnamespace`,
        [oids],
      ),
    );
    for (const row of rows) {
      const first = this.#byRelation.get(row.oid)?.values().next().value;
      if (!first) continue;
      const { schema, table } = first.metadata.context;
      if (row.schema !== schema || row.name !== table) {
        await this.rotateRelation(row.oid, row.name === null ? 'table dropped' : 'table renamed');
      }
    }
  }

  /** Ends every held long-poll at once (server shutdown). */
  wakeAll(): void {
    for (const shape of this.#byHandle.values()) shape.notify();
  }

  async close(): Promise<void> {
    for (const shape of this.#byHandle.values()) {
      shape.notify();
      await shape.log.close();
    }
  }

  async #create(definition: ShapeDefinition): Promise<Shape> {
    const { executor, publicationName, chunkBytes, chunkCache } = this.#options;
    // Planning and publishing write (the publication, the replica identity): the primary. Its
    // flushed WAL position afterwards bounds everything the snapshot must see (below); the
    // executor's connections commit synchronously, so it includes the publishing.
    const { plan, flushedLsn } = await executor
      .primary(async (client) => {
        const plan = await planShape(
          client,
          definition,
          this.#options.tables,
          this.#options.whereLimits,
        );
        await publishTable(client, publicationName, plan.schema, this.#options.tables.publish);
        const { rows } = await client.query<{ lsn: string }>(
          'SELECT pg_current_wal_flush_lsn()::text AS lsn',
        );
        return { plan, flushedLsn: lsnToBigInt(rows[0]?.lsn ?? '0/0') };
      })
      .catch((error: unknown) => {
        throw whereEvaluationError(definition, error);
      });
    let shape: Shape | undefined;
    try {
      const handle = `${createHash('sha256').update(definitionKey(definition)).digest('hex').slice(0, 8)}-${Date.now()}${randomBytes(2).toString('hex')}`;
      const dir = join(this.#shapesDir, handle);
      const metadata: ShapeMetadata = {
        handle,
        definition,
        relationOid: plan.schema.oid,
        context: plan.context,
        schemaHeader: plan.schemaHeader,
        columnSignature: plan.columnSignature,
        snapshot: undefined,
        snapshotComplete: false,
        filter: plan.filter,
      };
      shape = new Shape(metadata, await ShapeLog.create(dir, { chunkBytes, chunkCache }));
      await writeFileAtomically(join(dir, META_FILE), JSON.stringify(metadata));
      // Registered before the snapshot starts: changes committed meanwhile are buffered, then
      // filtered against the snapshot.
      this.#add(shape);
      // Commits routed before that moment never reach this shape: its snapshot must see them.
      // A replica may take it once it has replayed the primary's WAL as flushed after planning:
      // that covers every commit routed so far (replication only sends flushed WAL), the table
      // joining the publication (rows committed before it are never replicated, only the
      // snapshot has them) and the table's columns as planned. It does not depend on what this
      // process has seen of the stream, which is nothing yet after a restart or a failover.
      // Rows go into the log as they arrive, so a snapshot that fails midway is not re-run: the
      // request fails.
      const delivered = this.#options.recentCommits();
      const snapshotShape = shape;
      metadata.snapshot = await executor.read(
        (client) =>
          takeSnapshot(
            client,
            snapshotShape,
            plan.select,
            delivered,
            this.#options.filteredSnapshotTimeoutMs,
          ),
        { minLsn: flushedLsn, rerunnable: false },
      );
      shape.completeSnapshot();
      await shape.log.flush();
      await writeFileAtomically(join(dir, META_FILE), JSON.stringify(metadata));
      shape.notify();
      this.#options.log.info({ shape: shape.describe() }, 'shape created');
      return shape;
    } catch (error) {
      if (shape) await this.delete(shape);
      throw whereEvaluationError(definition, error);
    }
  }

  #add(shape: Shape): void {
    this.#byHandle.set(shape.handle, shape);
    this.#byKey.set(definitionKey(shape.metadata.definition), shape);
    let set = this.#byRelation.get(shape.metadata.relationOid);
    if (!set) this.#byRelation.set(shape.metadata.relationOid, (set = new Set()));
    set.add(shape);
    this.#router.add(shape);
  }
}

function replicationSignature(relation: RelationInfo): string {
  return JSON.stringify(relation.columns.map((c) => [c.name, c.typeOid, c.typeMod]));
}
