import { createHash, randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { lsnToBigInt } from '@sluice/protocol';
import type { QueryExecutor } from '../db/query-executor.js';
import { reconnectDelay } from '../async/reconnect-delay.js';
import type { RecentCommit } from './recent-commits.js';
import type { RelationInfo } from '../pg/transaction.js';
import { isLogMismatch, type ShapeLog, type ShapeStorage } from '../storage/shape-storage.js';
import { definitionKey, type ShapeDefinition } from './shape-definition.js';
import { ShapeRouter } from './shape-router.js';
import { takeSnapshot } from './shape-snapshot.js';
import { RowEncoder } from './row-encoder.js';
import { cutTornTransaction } from './cut-torn-transaction.js';
import {
  Shape,
  type DeferredTransaction,
  type ResultRefresh,
  type RowChange,
  type ShapeMetadata,
} from './shape.js';
import { refreshResults } from './subquery-refresh.js';
import { everyNode } from '../where/filter-spec.js';
import { isVisibleTo } from '../pg/transaction-visibility.js';
import { problemCode } from '../pg/describe-problem.js';
import { whereEvaluationError, planShape } from './shape-plan.js';
import { quoteTableIdentifier } from '../pg/table-identifier.js';
import { publishTable } from '../pg/publication.js';
import type { WhereLimits } from '../where/where-limits.js';
import { bulkhead, type BulkheadPolicy } from 'cockatiel';
import type { TablePolicy } from '../pg/table-policy.js';
import { admitCreation, type ShapeLimits } from './admit-creation.js';
import { SluiceError } from '../errors/sluice-error.js';
import type { WriterLink } from './writer-link.js';

export interface ShapeRegistryOptions extends ShapeLimits {
  /** Where shapes' logs and metadata are kept. */
  storage: ShapeStorage;
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
  /** A shape no request has read for this long is removed, its log with it. */
  idleTimeoutMs: number;
  /** Commits replication has already handed to shapes, recently (see `RecentCommits`). */
  recentCommits(): readonly RecentCommit[];
  log: FastifyBaseLogger;
}

/** Idle shapes are looked for every quarter of the idle time, and at least once a minute. */
const IDLE_SWEEP_MAX_MS = 60_000;
/** Backoff between tries to list the stored shapes (the storage down at start). */
const LIST_RETRY_MIN_MS = 200;
const LIST_RETRY_MAX_MS = 5_000;
/** Stored shapes reopened at once at start: enough to overlap their file reads, few descriptors. */
const REOPEN_CONCURRENCY = 16;
/** What `dependents` gives for the usual table, which no subquery reads: asked once per change. */
const NO_SHAPES: readonly Shape[] = [];

/**
 * Every shape the server holds, indexed by handle, by definition and by table. Creating a shape
 * adds its table to the publication, registers it (so changes are buffered from that moment)
 * and then takes the snapshot. Shapes and their logs survive restarts in `storage`.
 */
export class ShapeRegistry {
  readonly #byHandle = new Map<string, Shape>();
  readonly #byKey = new Map<string, Shape>();
  readonly #byRelation = new Map<number, Set<Shape>>();
  /** Subquery shapes by the tables their subqueries read. */
  readonly #byDependency = new Map<number, Set<Shape>>();
  readonly #router = new ShapeRouter();
  /** Encodes snapshots' rows on a thread of its own (started by the first snapshot). */
  readonly #encoder = new RowEncoder();
  /** Metadata parts that a table's shapes have alike, held once per table (see #share). */
  readonly #shared = new Map<number, Map<string, unknown>>();
  readonly #creating = new Map<string, Creation>();
  /** Shapes registered whose creation has not ended, with that creation (a lookup per request). */
  readonly #unfinished = new Map<Shape, Promise<Shape>>();
  readonly #idleSweepMs: number;
  readonly #idleSweep: NodeJS.Timeout;
  readonly #creations: BulkheadPolicy;
  readonly #options: ShapeRegistryOptions;
  /** Stored shapes are being reopened (`load`): lookups cannot tell yet whether one exists. */
  #loading = false;
  #loaded: Promise<void> = Promise.resolve();
  #loadStarted = false;
  #closed = false;
  /**
   * Set while another server writes the shared storage and this one reads it (`follow`): shapes
   * are created and deleted by asking that server, and their logs only read.
   */
  #link: WriterLink | undefined;
  /** Follower: shapes being opened from the storage, by handle (one open each). */
  readonly #adopting = new Map<string, Promise<Shape | undefined>>();
  /** Follower: each shape's log refresh running, and whether another must follow it. */
  readonly #refreshing = new Map<Shape, { running: Promise<void>; again: boolean }>();
  #resyncing: Promise<void> | undefined;
  readonly #removedListeners: ((handle: string) => void)[] = [];

  constructor(options: ShapeRegistryOptions) {
    this.#options = options;
    // An unbounded queue: the admission gate (SLUICE_MAX_CONCURRENT_INITIAL) bounds the waiters.
    this.#creations = bulkhead(options.maxConcurrentSnapshots, Infinity);
    this.#idleSweepMs = Math.min(IDLE_SWEEP_MAX_MS, Math.max(100, options.idleTimeoutMs / 4));
    this.#idleSweep = setInterval(() => {
      this.removeIdle().catch((error: unknown) => {
        options.log.warn({ err: error }, 'removing idle shapes failed');
      });
    }, this.#idleSweepMs).unref();
  }

  /**
   * Lists the shapes of a previous run and reopens them in the background, several at once, so
   * start-up does not wait for as many shapes as there are (`loaded` resolves once every one is
   * back). Until then lookups throw 503 NOT_READY rather than answer "no such shape", which
   * would create a second shape for a stored definition. Shapes whose snapshot never finished
   * are dropped.
   */
  load(): void {
    this.#loading = true;
    this.#loadStarted = true;
    const reopening = bulkhead(REOPEN_CONCURRENCY, Infinity);
    this.#loaded = this.#listShapes()
      .then((handles) =>
        Promise.all(
          handles.map((handle) =>
            reopening
              .execute(() => this.#reopen(handle))
              .catch((error: unknown) => {
                // Reading the storage or removing a discarded shape failed: the next start tries again.
                this.#options.log.error({ err: error, handle }, 'reopening a stored shape failed');
              }),
          ),
        ),
      )
      .then(() => {
        this.#loading = false;
        this.#options.log.info({ shapes: this.#byHandle.size }, 'shapes loaded');
      });
  }

  /**
   * The stored shapes' handles, asked again (with backoff) while the storage does not answer: a
   * Redis down at start delays loading, and with it replication, rather than failing the start.
   */
  async #listShapes(): Promise<string[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#options.storage.listShapes();
      } catch (error) {
        if (this.#closed) return [];
        const retryInMs = reconnectDelay(attempt, LIST_RETRY_MIN_MS, LIST_RETRY_MAX_MS);
        this.#options.log.warn({ err: error, retryInMs }, 'listing stored shapes failed');
        await new Promise((resolve) => setTimeout(resolve, retryInMs));
      }
    }
  }

  /** While stored shapes are being reopened: until then none can be found (`find` refuses). */
  get loading(): boolean {
    return this.#loading;
  }

  /** Resolves once every stored shape is reopened (at once if `load` was never called). */
  get loaded(): Promise<void> {
    return this.#loaded;
  }

  /**
   * Opens a stored shape and adds it. A follower only reads: a shape it cannot serve (snapshot
   * not complete, table refused, log unreadable) is left to the writer, which removes it.
   */
  async #reopen(handle: string): Promise<Shape | undefined> {
    if (this.#closed) return undefined;
    const { storage } = this.#options;
    const following = this.#link !== undefined;
    // Unreadable storage throws (the shape stays for the next start); damaged metadata is dropped.
    const text = await storage.readMetadata(handle);
    const metadata = parseMetadata(text);
    // A shape of a table the policy no longer serves goes: its clients refetch and get a 400.
    const refused = metadata && this.#options.tables.refusal(metadata.definition.table);
    if (!metadata?.snapshotComplete || refused !== undefined) {
      if (!following) await storage.removeShape(handle);
      return undefined;
    }
    if (following) {
      const log = await storage.openLog(handle);
      if (this.#closed || this.#byHandle.has(handle)) {
        await log.close();
        return this.#byHandle.get(handle);
      }
      const shape = this.#shapeOf(metadata, log);
      this.#add(shape);
      // A flush announced while the log was read was not this shape's yet: look once more.
      void this.refresh(shape);
      return shape;
    }
    // A log that cannot be recovered costs its clients one refetch, not the whole server.
    const log = await storage
      .openLog(handle)
      .then(async (opened) => {
        // Before the shape reads its last commit LSN from the log: see cutTornTransaction.
        const cut = await cutTornTransaction(opened).catch(async (error: unknown) => {
          await opened.destroy();
          throw error;
        });
        if (cut) this.#options.log.warn({ handle }, 'cut a transaction a crash left partly stored');
        return opened;
      })
      .catch((error: unknown) => {
        this.#options.log.error({ err: error, handle }, 'discarding an unreadable shape log');
        return undefined;
      });
    if (!log) {
      await storage.removeShape(handle);
      return undefined;
    }
    if (this.#closed) {
      await log.close();
      return undefined;
    }
    const shape = this.#shapeOf(metadata, log);
    this.#add(shape);
    return shape;
  }

  #shapeOf(metadata: ShapeMetadata, log: ShapeLog): Shape {
    const { storage } = this.#options;
    return new Shape(metadata, log, (json) => storage.writeMetadata(metadata.handle, json));
  }

  /** Lookups during loading: the shape asked for may be one not reopened yet. */
  #assertLoaded(): void {
    if (this.#loading) {
      throw new SluiceError(
        'SLUICE_ERR_NOT_READY',
        'Stored shapes are not loaded yet (after a restart, or while another server writes them); retry shortly',
      );
    }
  }

  /** How many shapes the server holds. */
  get size(): number {
    return this.#byHandle.size;
  }

  /** What the shapes' logs hold, in bytes (read by `/metrics` at scrape time). */
  get logBytes(): number {
    let total = 0;
    for (const shape of this.#byHandle.values()) total += shape.log.sizeBytes;
    return total;
  }

  get(handle: string): Shape | undefined {
    this.#assertLoaded();
    return this.#byHandle.get(handle);
  }

  /** The shape held under `handle`, if any, loading or not (for the servers' messages). */
  held(handle: string): Shape | undefined {
    return this.#byHandle.get(handle);
  }

  /** The shape a request for `definition` is served from (which makes it read, not idle). */
  find(definition: ShapeDefinition): Shape | undefined {
    this.#assertLoaded();
    const shape = this.#byKey.get(definitionKey(definition));
    shape?.markRead();
    return shape;
  }

  /**
   * The shape a request naming `handle` reads (`find` otherwise). A follower opens only the
   * shapes it asked the writer for; one the writer made for another server's client (behind a
   * load balancer, that client's next request may land here) is opened from the storage now,
   * instead of sending the client a 409 to the very handle it has.
   */
  async findHandle(definition: ShapeDefinition, handle: string): Promise<Shape | undefined> {
    const held = this.find(definition);
    if (held?.handle === handle || !this.#link || this.#byHandle.has(handle)) return held;
    // Storage out of reach: answered as before, a 409 to the shape's current handle.
    await this.#adopt(handle).catch(() => undefined);
    return this.find(definition);
  }

  /** The shapes a change may concern (each still applies its own where clause). */
  candidates(change: RowChange): Iterable<Shape> {
    return this.#router.candidates(change);
  }

  /** The shape for a definition, created (snapshot included) when there is none yet. */
  async getOrCreate(definition: ShapeDefinition): Promise<Shape> {
    return this.#creation(definition, (creation) => creation.shape);
  }

  /**
   * The shape for a definition once it exists, maybe with its snapshot still being written
   * (`ready` false): its sealed snapshot chunks can be served meanwhile. Creates it when there is
   * none yet; a creation that fails before the shape is registered (planning) throws here.
   */
  async getOrStart(definition: ShapeDefinition): Promise<Shape> {
    return this.#creation(definition, (creation) => creation.registered);
  }

  #creation(
    definition: ShapeDefinition,
    awaited: (creation: Creation) => Promise<Shape>,
  ): Promise<Shape> {
    this.#assertLoaded();
    const key = definitionKey(definition);
    const existing = this.#byKey.get(key);
    if (existing?.ready) {
      existing.markRead();
      return Promise.resolve(existing);
    }
    if (this.#link) return this.#requestShape(this.#link, definition);
    let creation = this.#creating.get(key);
    if (!creation) {
      this.#admitCreation(definition);
      let registered!: (shape: Shape) => void;
      let unfinished: Shape | undefined;
      const registering = new Promise<Shape>((resolve) => (registered = resolve));
      const shape = this.#creations
        .execute(() =>
          this.#create(definition, (created) => {
            unfinished = created;
            this.#unfinished.set(created, started.shape);
            registered(created);
          }),
        )
        .finally(() => {
          this.#creating.delete(key);
          if (unfinished) this.#unfinished.delete(unfinished);
        });
      // Settles with the creation when it fails before registering the shape.
      const started: Creation = {
        definition,
        shape,
        registered: Promise.race([registering, shape]),
      };
      // Nobody may ask for these: a failure is reported by the requests that do.
      shape.catch(() => undefined);
      started.registered.catch(() => undefined);
      creation = started;
      this.#creating.set(key, creation);
    }
    return awaited(creation);
  }

  /**
   * Follower: the writer makes the shape (or names the one it has), and this server opens it from
   * the storage. Both steps are shared by every request for the definition (the link's and
   * `#adopt`), so two servers, or two requests, asking at once end with one handle.
   */
  async #requestShape(link: WriterLink, definition: ShapeDefinition): Promise<Shape> {
    const handle = await link.requestShape(definition);
    const shape = this.#byHandle.get(handle) ?? (await this.#adopt(handle));
    if (!shape) {
      throw new SluiceError(
        'SLUICE_ERR_NOT_READY',
        `shape ${handle} was made by the writing server but cannot be read here yet; retry shortly`,
        { retryAfterS: 1 },
      );
    }
    shape.markRead();
    return shape;
  }

  /** Follower: opens a stored shape not held yet, once however many ask at the same time. */
  #adopt(handle: string): Promise<Shape | undefined> {
    let adopting = this.#adopting.get(handle);
    if (!adopting) {
      adopting = this.#reopen(handle).finally(() => this.#adopting.delete(handle));
      this.#adopting.set(handle, adopting);
    }
    return adopting;
  }

  /** Refuses (503) a new shape beyond the limits; shapes being created count. */
  #admitCreation(definition: ShapeDefinition): void {
    const registered = [...this.#byHandle.values()].map((shape) => shape.metadata.definition);
    // A creation past planning is registered already.
    const unregistered = [...this.#creating]
      .filter(([key]) => !this.#byKey.has(key))
      .map(([, creation]) => creation.definition);
    const held = { registered, unregistered, creating: this.#creating.size };
    admitCreation(definition, held, this.#options, Math.ceil(this.#idleSweepMs / 1000));
  }

  /**
   * Removes the shapes no request has read for the idle time, logs and all. A client coming back
   * with such a handle gets a 409 to the shape made anew, as for any deleted shape.
   */
  async removeIdle(): Promise<void> {
    // A follower removes nothing: it tells the writer which shapes it served since the last sweep.
    if (this.#link) {
      const now = Date.now();
      const read = [...this.#byHandle.values()].filter(
        (shape) => !shape.idleFor(this.#idleSweepMs, now),
      );
      this.#link.reportRead(read.map((shape) => shape.handle));
      return;
    }
    const { idleTimeoutMs } = this.#options;
    const idle = [...this.#byHandle.values()].filter((shape) =>
      shape.idleFor(idleTimeoutMs, Date.now()),
    );
    if (idle.length === 0) return;
    this.#options.log.info({ shapes: idle.length }, 'removing idle shapes');
    // Each removal waits on the storage: a shape read meanwhile is kept.
    for (const shape of idle) {
      if (shape.idleFor(idleTimeoutMs, Date.now())) await this.delete(shape);
    }
  }

  /**
   * Deletes a shape on request (`DELETE /v1/shape`): one whose snapshot is being taken is deleted
   * once its creation has ended, never under it (the requests waiting for it are answered).
   */
  async deleteWhenCreated(shape: Shape): Promise<void> {
    await this.created(shape);
    await this.delete(shape);
  }

  /**
   * Settles once the creation of `shape` has ended, either way (at once when none is under way).
   * Not the same as `ready`: that is true a little before, while the log and metadata are written.
   */
  async created(shape: Shape): Promise<void> {
    await this.#unfinished.get(shape)?.catch(() => undefined);
  }

  /** Whether `shape` is being created: its snapshot written, or its log and metadata after it. */
  creating(shape: Shape): boolean {
    return this.#unfinished.has(shape);
  }

  async delete(shape: Shape): Promise<void> {
    // A follower asks the writer, whose announcement makes it forget the shape (`forgetRemoved`).
    if (this.#link) return this.#link.requestDelete(shape.handle);
    if (!this.#forget(shape)) return;
    await shape.log.destroy();
    // The log is gone; its metadata too (on disk the same folder, elsewhere a key of its own).
    await this.#options.storage.removeShape(shape.handle);
    for (const listener of this.#removedListeners) listener(shape.handle);
  }

  /** Calls `listener` with the handle of every shape this server deletes (and removes from storage). */
  onRemoved(listener: (handle: string) => void): void {
    this.#removedListeners.push(listener);
  }

  /**
   * Starts following the storage another server writes (see `#link`): the shapes held so far go
   * (their logs may be behind what that server wrote), and the stored ones are loaded to be read.
   */
  async follow(link: WriterLink): Promise<void> {
    if (this.#link === link) return;
    if (this.#loadStarted) await this.unload();
    this.#link = link;
    this.load();
    await this.#loaded;
  }

  /** Whether this server reads a storage another writes (`follow`). */
  get following(): boolean {
    return this.#link !== undefined;
  }

  /**
   * Stops following: this server writes the storage from now on. The shapes held are caught up
   * with what the last writer stored (`resync`), so their logs take appends where it stopped and
   * clients keep their handles and offsets; shapes it left unfinished are removed.
   */
  async lead(): Promise<void> {
    if (!this.#link) return;
    this.#link = undefined;
    await this.resync();
  }

  async #resumeResults(shape: Shape): Promise<void> {
    const stored = parseMetadata(await this.#options.storage.readMetadata(shape.handle));
    shape.resumeResults(stored?.subqueryResults ?? []);
  }

  /**
   * Brings the shapes held in line with the storage: those removed there are forgotten, those
   * held are refreshed (their waiting requests woken), stored ones not held are opened.
   */
  resync(): Promise<void> {
    this.#resyncing ??= this.#resync().finally(() => (this.#resyncing = undefined));
    return this.#resyncing;
  }

  async #resync(): Promise<void> {
    if (this.#closed) return;
    const stored = new Set(await this.#options.storage.listShapes());
    for (const shape of [...this.#byHandle.values()]) {
      if (!stored.has(shape.handle)) await this.forgetRemoved(shape.handle);
    }
    await Promise.all(
      [...stored].map(async (handle) => {
        const held = this.#byHandle.get(handle);
        if (held) {
          await this.refresh(held);
          // About to write: a subquery shape resumes from the results its last writer stored.
          if (!this.#link && held.subqueries) await this.#resumeResults(held);
        } else if (this.#link) await this.#adopt(handle);
        else await this.#reopen(handle);
      }),
    );
  }

  /**
   * Follower: takes in what the writer appended to a shape's log, then wakes its requests. Calls
   * while one runs share one more refresh after it. A log that no longer matches the storage
   * (removed, or cut) is forgotten, and opened again when still stored.
   */
  refresh(shape: Shape): Promise<void> {
    const current = this.#refreshing.get(shape);
    if (current) {
      current.again = true;
      return current.running;
    }
    const state = { running: Promise.resolve(), again: false };
    state.running = (async () => {
      do {
        state.again = false;
        try {
          await shape.log.refresh();
          shape.notify();
        } catch (error) {
          // Storage out of reach: the shape stays as it was; the resync after it is back catches up.
          if (shape.deleted || !isLogMismatch(error)) return;
          this.#options.log.warn(
            { err: error, handle: shape.handle },
            'reopening a shape log that changed under it',
          );
          await this.forgetRemoved(shape.handle);
          await this.#adopt(shape.handle).catch(() => undefined);
          return;
        }
      } while (state.again && !shape.deleted);
    })().finally(() => this.#refreshing.delete(shape));
    this.#refreshing.set(shape, state);
    return state.running;
  }

  /** Follower: the writer removed a shape: forget it (requests on it get a 409), storage untouched. */
  async forgetRemoved(handle: string): Promise<void> {
    const shape = this.#byHandle.get(handle);
    if (!shape || !this.#forget(shape)) return;
    await shape.log.close().catch(() => undefined);
  }

  /** Drops a shape from every index (its storage stays); false if it was not held. */
  #forget(shape: Shape): boolean {
    if (this.#byHandle.get(shape.handle) !== shape) return false;
    this.#byHandle.delete(shape.handle);
    // Shapes stored under an older key scheme may share a key: only the one it names goes.
    const key = definitionKey(shape.metadata.definition);
    if (this.#byKey.get(key) === shape) this.#byKey.delete(key);
    const { relationOid } = shape.metadata;
    const relationShapes = this.#byRelation.get(relationOid);
    relationShapes?.delete(shape);
    if (relationShapes?.size === 0) {
      this.#byRelation.delete(relationOid);
      this.#shared.delete(relationOid);
    }
    this.#router.remove(shape);
    for (const oid of dependencyOids(shape)) {
      const dependents = this.#byDependency.get(oid);
      dependents?.delete(shape);
      if (dependents?.size === 0) this.#byDependency.delete(oid);
    }
    shape.markDeleted();
    return true;
  }

  /**
   * Shapes are not loaded until `load` (or `reload`) is called: lookups answer 503 NOT_READY
   * meanwhile. A server over a shared storage (Redis) loads them only once it holds the
   * replication lock, i.e. once it is the one that writes them.
   */
  awaitLoad(): void {
    this.#loading = true;
  }

  /** Whether `load` was called (shapes loaded, or being loaded). */
  get loadStarted(): boolean {
    return this.#loadStarted;
  }

  /**
   * Forgets every shape held and loads them again from the storage, which another server has
   * written since they were loaded. Requests held on the forgotten shapes are answered as for
   * deleted ones (409 to the shape's handle, which the reloaded shape keeps).
   */
  async reload(): Promise<void> {
    await this.unload();
    this.load();
    await this.#loaded;
  }

  /**
   * Forgets every shape held, leaving the storage as it is, until the next `load`: another
   * server writes the shared storage now, and nothing here may change it (the idle sweep, a
   * rotation). Lookups answer 503 NOT_READY meanwhile.
   */
  async unload(): Promise<void> {
    await this.#loaded;
    await Promise.all(
      [...this.#creating.values()].map((creation) => creation.shape.catch(() => undefined)),
    );
    this.#loading = true;
    this.#loadStarted = false;
    for (const shape of [...this.#byHandle.values()]) {
      this.#forget(shape);
      // Nothing appended is unflushed: replication flushed before its next stream started.
      await shape.log.close().catch(() => undefined);
    }
  }

  /** Continuity broke for one table (truncated, columns changed): its shapes start over. */
  async rotateRelation(relationOid: number, reason: string): Promise<void> {
    if (this.#link) return; // the writer rotates, and announces the shapes it removed
    const shapes = [
      ...(this.#byRelation.get(relationOid) ?? []),
      ...(this.#byDependency.get(relationOid) ?? []),
    ];
    if (shapes.length === 0) return;
    this.#options.log.warn({ relationOid, shapes: shapes.length, reason }, 'rotating shapes');
    for (const shape of shapes) await this.delete(shape);
  }

  /** Continuity broke for everything (new slot, other system): every shape starts over. */
  async rotateAll(reason: string): Promise<void> {
    if (this.#link || this.#byHandle.size === 0) return;
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
    // A follower leaves it to the writer's sweep (verifyRelations), announced within seconds.
    if (this.#link) return true;
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
    if (this.#link) return;
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
    clearInterval(this.#idleSweep);
    this.#closed = true;
    await this.#loaded;
    // A client may hold chunks of a snapshot still being written: finished, the shape outlives
    // the restart (as when its first request waited for the whole snapshot, which closing the
    // server waited for).
    await Promise.all(
      [...this.#creating.values()].map((creation) => creation.shape.catch(() => undefined)),
    );
    for (const shape of this.#byHandle.values()) {
      shape.notify();
      await shape.log.close();
    }
    await this.#encoder.close();
  }

  async #create(definition: ShapeDefinition, registered: (shape: Shape) => void): Promise<Shape> {
    const { executor, publicationName, storage } = this.#options;
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
        for (const table of [plan.schema, ...plan.dependencies]) {
          await publishTable(client, publicationName, table, this.#options.tables.publish);
        }
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
      shape = this.#shapeOf(metadata, await storage.createLog(handle));
      await storage.writeMetadata(handle, JSON.stringify(metadata));
      // Registered before the snapshot starts: changes committed meanwhile are buffered, then
      // filtered against the snapshot.
      this.#add(shape);
      registered(shape);
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
            this.#encoder,
          ),
        { minLsn: flushedLsn, rerunnable: false },
      );
      if (shape.subqueries) {
        const completing = shape;
        await shape.serially(async () => {
          completing.completeSnapshot();
          for (const deferred of completing.takeDeferred()) {
            await this.#applyWithResults(completing, deferred);
          }
        });
        // A change its results could not take started it over at once: its requests get the
        // refetch a deleted shape gives, and nothing is written for it any more.
        if (shape.deleted) return shape;
        await shape.flush();
      } else {
        shape.completeSnapshot();
        await shape.log.flush();
      }
      await shape.saveMetadata();
      shape.notify();
      this.#options.log.info({ shape: shape.describe() }, 'shape created');
      return shape;
    } catch (error) {
      const failure = whereEvaluationError(definition, error);
      if (shape) {
        // Readers of its sealed chunks are waiting on it: they report this (see logAnswer).
        shape.snapshotFailure = failure;
        await this.delete(shape);
      }
      throw failure;
    }
  }

  #add(shape: Shape): void {
    this.#share(shape.metadata);
    this.#byHandle.set(shape.handle, shape);
    this.#byKey.set(definitionKey(shape.metadata.definition), shape);
    let set = this.#byRelation.get(shape.metadata.relationOid);
    if (!set) this.#byRelation.set(shape.metadata.relationOid, (set = new Set()));
    set.add(shape);
    this.#router.add(shape);
    for (const oid of dependencyOids(shape)) {
      let dependents = this.#byDependency.get(oid);
      if (!dependents) this.#byDependency.set(oid, (dependents = new Set()));
      dependents.add(shape);
    }
  }

  /** Subquery shapes whose subqueries read the table. */
  dependents(relationOid: number): Iterable<Shape> {
    return this.#byDependency.get(relationOid) ?? NO_SHAPES;
  }

  /**
   * A transaction for a subquery shape (ReplicationConsumer), with its changes of the tables the
   * shape's subqueries read. Work on one shape runs in order, after its snapshot.
   */
  applyWithResults(shape: Shape, deferred: DeferredTransaction): Promise<boolean> {
    return shape.serially(async () => {
      if (shape.deleted) return false;
      if (!shape.ready) {
        shape.defer(deferred);
        return false;
      }
      return this.#applyWithResults(shape, deferred);
    });
  }

  async #applyWithResults(shape: Shape, deferred: DeferredTransaction): Promise<boolean> {
    const { transaction, changes, dependencyChanges } = deferred;
    if (shape.holds(transaction)) return false;
    const state = shape.subqueries!;
    if (!state.hasResults) {
      await this.#restart(shape, 'its subquery results were not stored with its log');
      return false;
    }
    let refresh: ResultRefresh | undefined;
    const seen = shape.lastRefresh;
    const unseen = !(seen && isVisibleTo(seen, transaction.xid, transaction.commitLsn));
    if (unseen && state.mayChangeResults(dependencyChanges)) {
      try {
        refresh = await this.#options.executor.primary((client) =>
          refreshResults(client, shape, transaction, this.#options.filteredSnapshotTimeoutMs),
        );
      } catch (error) {
        // A subquery Postgres no longer accepts (a column or table of it changed), or one that
        // now takes longer than a filtered snapshot may: the shape starts over, and its clients
        // get the reason when they ask for it again. Anything else restarts the stream.
        const code = problemCode(error);
        if (!code?.startsWith('42') && code !== '57014') throw error;
        await this.#restart(shape, (error as Error).message);
        return false;
      }
      if (refresh.change.restart) {
        await this.#restart(shape, refresh.change.restart);
        return false;
      }
      shape.lastRefresh = refresh.visibility;
    }
    return shape.appendWithResults(transaction, changes, refresh);
  }

  async #restart(shape: Shape, reason: string): Promise<void> {
    this.#options.log.warn({ shape: shape.describe(), reason }, 'subquery shape starts over');
    await this.delete(shape);
  }

  /**
   * Replaces the parts of a shape's metadata that the table's other shapes have alike (message
   * context, schema header, column signature, table name) with the copy already held: with
   * thousands of shapes of a table, a copy each is a good part of what an idle shape costs.
   * Nothing changes these parts after creation, so sharing them is safe.
   */
  #share(metadata: ShapeMetadata): void {
    let parts = this.#shared.get(metadata.relationOid);
    if (!parts) this.#shared.set(metadata.relationOid, (parts = new Map<string, unknown>()));
    const one = <T>(value: T): T => {
      const key = typeof value === 'string' ? `s${value}` : `o${JSON.stringify(value)}`;
      const held = parts.get(key) as T | undefined;
      if (held !== undefined) return held;
      parts.set(key, value);
      return value;
    };
    metadata.context = one(metadata.context);
    metadata.schemaHeader = one(metadata.schemaHeader);
    metadata.columnSignature = one(metadata.columnSignature);
    metadata.definition.table = one(metadata.definition.table);
  }
}

/** A shape being created: `registered` once readers can find it, `shape` once it is ready. */
interface Creation {
  definition: ShapeDefinition;
  shape: Promise<Shape>;
  registered: Promise<Shape>;
}

function parseMetadata(text: string | undefined): ShapeMetadata | undefined {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as ShapeMetadata;
  } catch {
    return undefined;
  }
}

function replicationSignature(relation: RelationInfo): string {
  return JSON.stringify(relation.columns.map((c) => [c.name, c.typeOid, c.typeMod]));
}

/** The tables a shape's subqueries read, nested ones included. */
function dependencyOids(shape: Shape): number[] {
  const root = shape.metadata.filter?.root;
  if (!root || !shape.subqueries) return [];
  const oids = everyNode(root).flatMap((node) => (node.op === 'subquery' ? [node.query.oid] : []));
  return [...new Set(oids)];
}
