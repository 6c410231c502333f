import type { FastifyBaseLogger } from 'fastify';
import type { Shape, RowChange } from '../shapes/shape.js';
import type { ShapeRegistry } from '../shapes/shape-registry.js';
import type { PublishMode } from '../config/config-options.js';
import { describeProblem } from '../pg/describe-problem.js';
import type { StatusMonitor } from '../status/status-monitor.js';
import type { ShapeStorage } from '../storage/shape-storage.js';
import { RecentCommits, type RecentCommit } from '../shapes/recent-commits.js';
import { reconnectDelay } from '../async/reconnect-delay.js';
import { ReplicationStream, type StreamSetup } from './replication-stream.js';
import type { StorageCoordinator } from './storage-coordinator.js';
import type { RelationInfo, Transaction } from '../pg/transaction.js';

export interface ReplicationConsumerOptions {
  connectionString: string;
  sessionOptions: string;
  slotName: string;
  publicationName: string;
  /** SLUICE_PUBLISH: whether setup may create the publication. */
  publish: PublishMode;
  /** Holds the continuity record (`continuity`) beside the shapes. */
  storage: ShapeStorage;
  /**
   * Set when other servers share the storage (Redis): holding the replication lock makes this
   * server the writer (`lead`), being refused it a reader (`follow`).
   */
  coordinator?: StorageCoordinator | undefined;
  /** With `coordinator`: the longest wait of a reader between tries to take the lock. */
  takeoverRetryMs?: number;
  retryMinMs: number;
  retryMaxMs: number;
  livenessTimeoutMs: number;
  registry: ShapeRegistry;
  status: StatusMonitor;
  /** Called when the stream fails: the database itself may be gone, so look now. */
  onFailure(): void;
  log: FastifyBaseLogger;
}

/** Transactions allowed to wait for a flush before the stream is held back. */
const MAX_UNFLUSHED_TRANSACTIONS = 500;
/** SQLSTATE `lockSlot` reports when another server holds the slot. */
const SLOT_IN_USE = '55006';
/** A stream that ran this long counts as healthy: the next failure starts backoff from the floor. */
const HEALTHY_AFTER_MS = 30_000;

/** The storage record of the database the shapes were made from. */
const CONTINUITY_RECORD = 'continuity';

/** What identifies the database the slot lives in; another one means other data. */
interface ContinuityState {
  systemId: string;
  timeline: number;
}

/**
 * Feeds committed transactions from the slot into shape logs, flushes them in groups and only
 * then acknowledges the slot (docs/architecture.md invariant 1). Any stream failure ends that
 * stream; a new one restarts from the slot after a backoff, forever (invariants 2 and 5).
 * Replays need no global bookkeeping: each shape drops what its log already holds.
 */
export class ReplicationConsumer {
  readonly #options: ReplicationConsumerOptions;
  #stream: ReplicationStream | undefined;
  #closed = false;
  #wake: (() => void) | undefined;
  /** End LSN of the last transaction handed to shapes. */
  #received = 0n;
  /** Everything up to here is durable in every shape log. */
  #durable = 0n;
  #unflushed = 0;
  readonly #dirty = new Set<Shape>();
  #recent = new RecentCommits();
  #flushing: Promise<void> | undefined;
  #loop: Promise<void> | undefined;
  #continuityChecked = false;
  #markChecked: () => void = () => undefined;
  readonly #checked = new Promise<true>((resolve) => (this.#markChecked = () => resolve(true)));

  constructor(options: ReplicationConsumerOptions) {
    this.#options = options;
  }

  /**
   * Resolves once this process has checked the slot and the database once, i.e. knows whether
   * the shape logs left by a previous run still continue the stream; false if `timeoutMs`
   * passes first. Until then those logs must not be served as current.
   */
  async continuityChecked(timeoutMs: number): Promise<boolean> {
    if (this.#continuityChecked) return true;
    return Promise.race([
      this.#checked,
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref()),
    ]);
  }

  continuityKnown(): boolean {
    return this.#continuityChecked;
  }

  /** Commits handed to shapes in the last seconds (a new shape's snapshot must see them). */
  recentCommits(): RecentCommit[] {
    return this.#recent.list();
  }

  /**
   * The replication position every shape has durably seen (`global_last_seen_lsn`): on a server
   * that reads what another writes, the writer's.
   */
  lastSeenLsn(): bigint {
    const coordinator = this.#options.coordinator;
    return coordinator?.reading ? coordinator.writerLsn() : this.#durable;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#wake?.();
    await this.#stream?.close();
    await this.#loop;
    await this.#flush().catch((error: unknown) =>
      this.#options.log.error({ err: error }, 'writing shape logs failed while closing'),
    );
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#closed) {
      // Nothing received while the storage is down could be made durable (nor acknowledged):
      // the slot keeps it, and the stream starts once the storage answers again.
      if (this.#options.status.inputs.storage === 'down') {
        const { retryMinMs, retryMaxMs } = this.#options;
        await this.#sleep(reconnectDelay(attempt++, retryMinMs, retryMaxMs));
        continue;
      }
      const stream = new ReplicationStream(
        {
          connectionString: this.#options.connectionString,
          sessionOptions: this.#options.sessionOptions,
          slotName: this.#options.slotName,
          publicationName: this.#options.publicationName,
          publish: this.#options.publish,
          livenessTimeoutMs: this.#options.livenessTimeoutMs,
        },
        {
          onSetup: (setup) => this.#onSetup(setup),
          onTransaction: (transaction) => this.#onTransaction(transaction),
          onRelation: (relation) => this.#onRelation(relation),
          onKeepalive: (lsn) => this.#onKeepalive(lsn),
        },
      );
      this.#stream = stream;
      const { status, log } = this.#options;
      status.replicationConnecting();
      const startedAt = Date.now();
      let error: Error | undefined;
      try {
        await stream.started();
        status.replicationStreaming();
        log.info({ slot: this.#options.slotName }, 'replication streaming');
        error = await stream.ended;
      } catch (failure) {
        error = failure as Error;
      }
      if (this.#closed) {
        await stream.close();
        return;
      }
      // Reported before cleaning up, so the state leaves live as soon as the stream is lost.
      if (Date.now() - startedAt > HEALTHY_AFTER_MS) attempt = 0;
      const problem = describeProblem(error ?? new Error('the replication stream ended'));
      // A server waiting for another to release the slot (sharing its storage) asks often: it
      // takes over within seconds of the writer's death.
      const standby = this.#options.coordinator !== undefined && problem.code === SLOT_IN_USE;
      const { retryMinMs, retryMaxMs } = this.#options;
      const takeoverMs = this.#options.takeoverRetryMs ?? retryMaxMs;
      const maxMs = standby ? Math.min(retryMaxMs, takeoverMs) : retryMaxMs;
      const delay = reconnectDelay(attempt++, retryMinMs, maxMs);
      const retryAt = new Date(Date.now() + delay);
      if (standby) status.replicationStandby(problem, retryAt);
      else status.replicationFailed(problem, retryAt);
      this.#options.onFailure();
      (standby ? log.debug : log.warn).call(
        log,
        { code: problem.code, retryInMs: delay },
        `replication stopped (${problem.message}); reconnecting`,
      );
      const waited = this.#sleep(delay);
      await stream.close();
      this.#stream = undefined;
      // Whatever was received is made durable before a new stream replays from the slot.
      await this.#flushed();
      // Another server writes the shared storage now: this one serves what it writes.
      if (standby) await this.#follow();
      await waited;
    }
  }

  /**
   * Another server holds the slot and writes the shared storage: this one reads it, and has no
   * continuity of its own to check (the writer checked it, and removes what it breaks).
   */
  async #follow(): Promise<void> {
    try {
      await this.#options.coordinator!.follow();
      this.#continuityChecked = true;
      this.#markChecked();
    } catch (error) {
      this.#options.log.warn({ err: error }, 'reading the shared storage failed');
    }
  }

  /** Flushes what was received; a storage that refuses it is logged (its shapes stay dirty). */
  async #flushed(): Promise<void> {
    try {
      await this.#flush();
    } catch (failure) {
      this.#options.log.error({ err: failure }, 'writing shape logs failed');
    }
  }

  /** Resolves after `ms`, or at once when the consumer closes. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  async #onSetup(setup: StreamSetup): Promise<void> {
    const { registry, status, storage, coordinator } = this.#options;
    await coordinator?.lead();
    // A storage that cannot be read fails the stream (retried); only an unreadable record is
    // taken for none, as on a first start.
    const text = await storage.readRecord(CONTINUITY_RECORD);
    const previous = parseContinuity(text);
    const otherSystem =
      previous?.systemId !== setup.systemId || previous.timeline !== setup.timeline;
    // The very first slot of a new installation is not an incident; a lost one is.
    if (setup.slotProblem && (previous || registry.size > 0)) {
      status.replicationIncident({
        code: setup.slotProblem.code,
        message: `${setup.slotProblem.message}: a new slot was created and every shape starts over`,
      });
    }
    if (setup.slotProblem) {
      await registry.rotateAll(`replication slot ${this.#options.slotName} was (re)created`);
    } else if (previous && otherSystem) {
      await registry.rotateAll(
        `database changed: system ${previous.systemId}/${previous.timeline} → ${setup.systemId}/${setup.timeline}`,
      );
    }
    // Commits routed before continuity broke belong to shapes that are gone now.
    if (setup.slotProblem || otherSystem) this.#recent = new RecentCommits();
    if (otherSystem) {
      this.#durable = 0n;
      this.#received = 0n;
      await storage.writeRecord(
        CONTINUITY_RECORD,
        JSON.stringify({ systemId: setup.systemId, timeline: setup.timeline }),
      );
    }
    this.#continuityChecked = true;
    this.#markChecked();
  }

  async #onRelation(relation: RelationInfo): Promise<void> {
    const { registry } = this.#options;
    if (registry.relationChanged(relation)) {
      await registry.rotateRelation(
        relation.oid,
        `${relation.schema}.${relation.name} changed columns or name`,
      );
    }
  }

  async #onTransaction(transaction: Transaction): Promise<void> {
    if (transaction.endLsn <= this.#durable) return; // a replay of what is already durable
    const { registry } = this.#options;
    this.#recent.add({ xid: transaction.xid, commitLsn: transaction.commitLsn });
    // A truncated table's shapes start over whatever else the transaction did to it, so they
    // go first: nothing is appended to a shape about to be deleted.
    for (const change of transaction.changes) {
      if (change.kind !== 'truncate') continue;
      for (const relation of change.relations)
        await registry.rotateRelation(relation.oid, 'table truncated');
    }
    const perShape = new Map<Shape, { change: RowChange; position: number }[]>();
    // Subquery shapes, with the transaction's changes of the tables their subqueries read.
    const touched = new Map<Shape, RowChange[]>();
    transaction.changes.forEach((change, position) => {
      if (change.kind === 'truncate') return;
      for (const shape of registry.candidates(change)) {
        let list = perShape.get(shape);
        if (!list) perShape.set(shape, (list = []));
        list.push({ change, position });
      }
      for (const shape of registry.dependents(change.relation.oid)) {
        let list = touched.get(shape);
        if (!list) touched.set(shape, (list = []));
        list.push(change);
      }
    });
    const withResults = new Set(touched.keys());
    for (const [shape, changes] of perShape) {
      if (shape.subqueries) withResults.add(shape);
      else if (shape.applyTransaction(transaction, changes)) this.#dirty.add(shape);
    }
    // Awaited before the stream goes on, so nothing is acknowledged that a shape has not
    // appended yet. Shapes are independent: their refreshes run side by side (each on a pooled
    // connection), so a table many subquery shapes read costs about one refresh, not one each.
    await Promise.all(
      [...withResults].map(async (shape) => {
        const changes = perShape.get(shape) ?? [];
        const dependencyChanges = touched.get(shape) ?? [];
        if (await registry.applyWithResults(shape, { transaction, changes, dependencyChanges })) {
          this.#dirty.add(shape);
        }
      }),
    );
    this.#received = transaction.endLsn;
    this.#unflushed++;
    // Backpressure: the stream waits (and Postgres buffers) rather than memory growing.
    if (this.#unflushed >= MAX_UNFLUSHED_TRANSACTIONS) await this.#flush();
    else this.#flushInBackground();
  }

  /**
   * A flush nobody awaits must still not fail silently: a log that cannot be written ends the
   * stream, and the next one replays from the slot what was never acknowledged.
   */
  #flushInBackground(): void {
    this.#flush().catch((error: unknown) => {
      this.#options.log.error({ err: error }, 'writing shape logs failed; restarting replication');
      void this.#stream?.close();
    });
  }

  #onKeepalive(lsn: bigint): bigint {
    // Fully caught up: the keepalive position is durable too, so idle slots retain no WAL.
    if (
      !this.#flushing &&
      this.#dirty.size === 0 &&
      this.#received <= this.#durable &&
      lsn > this.#durable
    ) {
      this.#durable = lsn;
      this.#received = lsn;
    }
    return this.#durable;
  }

  /** Group commit: one fdatasync per dirty log for however many transactions arrived meanwhile. */
  #flush(): Promise<void> {
    // `.finally` runs after the assignment even when there is nothing to flush; clearing the
    // field inside the async body could run first and leave a settled promise here for good.
    this.#flushing ??= this.#flushUntilClean().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #flushUntilClean(): Promise<void> {
    while (this.#received > this.#durable || this.#dirty.size > 0) {
      // A shape deleted since it was written to (rotated, DELETEd) has no log to flush.
      const shapes = [...this.#dirty].filter((shape) => !shape.deleted);
      const upTo = this.#received;
      this.#dirty.clear();
      this.#unflushed = 0;
      try {
        await Promise.all(shapes.map((shape) => shape.flush()));
      } catch (error) {
        // Still to be flushed (a storage that failed may keep what it was given, as Redis
        // does): nothing past them is acknowledged until a flush of them succeeds.
        for (const shape of shapes) this.#dirty.add(shape);
        throw error;
      }
      if (upTo > this.#durable) this.#durable = upTo;
      this.#stream?.acknowledge(this.#durable);
      for (const shape of shapes) shape.notify();
      this.#options.coordinator?.flushed(
        shapes.map((shape) => shape.handle),
        this.#durable,
      );
    }
  }
}

function parseContinuity(text: string | undefined): ContinuityState | undefined {
  try {
    return text === undefined ? undefined : (JSON.parse(text) as ContinuityState);
  } catch {
    return undefined;
  }
}
