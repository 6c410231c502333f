import { createHash } from 'node:crypto';
import { bigIntToLsn, lsnToBigInt } from '@sluice/protocol';
import type { Client } from 'pg';
import { LogicalReplicationService, type Pgoutput } from 'pg-logical-replication';
import type { Problem } from '../pg/describe-problem.js';
import { TextPgoutputPlugin } from './text-pgoutput-plugin.js';
import type { Change, RelationInfo, Transaction } from '../pg/transaction.js';

/** What the stream found while setting up, before any change is delivered. */
export interface StreamSetup {
  systemId: string;
  timeline: number;
  /**
   * Set when the slot was missing (42704) or invalidated (55000), so a new one was made:
   * continuity broke.
   */
  slotProblem: Problem | undefined;
}

export interface ReplicationStreamHandlers {
  /** Runs before streaming starts; may rotate shapes when continuity broke. */
  onSetup(setup: StreamSetup): Promise<void>;
  /** Each committed transaction in commit order; the next one waits for this to settle. */
  onTransaction(transaction: Transaction): Promise<void>;
  /** A relation's shape as replication sees it (columns may have changed). */
  onRelation(relation: RelationInfo): Promise<void>;
  /** Postgres has sent everything up to `lsn`; returns the position safe to acknowledge. */
  onKeepalive(lsn: bigint): bigint;
}

export interface ReplicationStreamOptions {
  connectionString: string;
  /** libpq `options` (session settings that shape the text of values). */
  sessionOptions: string;
  slotName: string;
  publicationName: string;
  /** Silence (no message, no answer to a ping) after which the connection is given up. */
  livenessTimeoutMs: number;
}

type QueueItem = Pgoutput.Message | { tag: 'keepalive'; lsn: bigint };

/** Queue lengths (messages) at which the socket is paused and resumed. */
const QUEUE_HIGH_WATER = 10_000;
const QUEUE_LOW_WATER = 1_000;
/** How long closing waits for an orderly end before destroying the socket. */
const CLOSE_GRACE_MS = 1_000;

/** A replication error with the Postgres SQLSTATE when there is one. */
export class ReplicationError extends Error {
  override readonly name = 'ReplicationError';
  constructor(
    message: string,
    readonly code: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * One replication connection, from setup to its end. It is never reused: after any failure the
 * owner builds a new one that restarts from the slot and drops replays (DESIGN.md invariant 2).
 * Acknowledgements are sent only for positions the owner says are durable (invariant 1).
 */
export class ReplicationStream {
  readonly #service: LogicalReplicationService;
  readonly #handlers: ReplicationStreamHandlers;
  readonly #options: ReplicationStreamOptions;
  #acknowledged = 0n;
  #statusTimer: NodeJS.Timeout | undefined;
  #pending: { xid: number; commitLsn: bigint; changes: Change[] } | undefined;
  #failure: Error | undefined;
  #closed = false;
  readonly #queue: QueueItem[] = [];
  #draining = false;
  #statusIntervalMs = 10_000;
  #heardAt = Date.now();
  #streaming = false;
  #waitingOnUs = false;
  readonly #watchdog: NodeJS.Timeout;
  readonly ended: Promise<Error | undefined>;
  readonly #started: Promise<void>;

  constructor(options: ReplicationStreamOptions, handlers: ReplicationStreamHandlers) {
    this.#options = options;
    this.#handlers = handlers;
    this.#service = new LogicalReplicationService(
      {
        connectionString: options.connectionString,
        options: options.sessionOptions,
        // A connect that gets no answer (black-holed network) fails instead of hanging.
        connectionTimeoutMillis: options.livenessTimeoutMs,
        keepAlive: true,
      },
      // No automatic acknowledgement (it confirms what was merely received) and no library
      // timer (it acknowledges the last received LSN). No library flow control either: it emits
      // keepalives on receipt while data still waits in its queue, so a keepalive could vouch
      // for a transaction not yet stored. Data and keepalives share one queue here instead.
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    );
    // The library emits socket errors here; without a listener they would crash the process.
    this.#service.on('error', (error) => this.#fail(error));
    this.#service.on('data', (_lsn: string, message: Pgoutput.Message) => {
      this.#heardAt = Date.now();
      this.#enqueue(message);
    });
    this.#service.on('heartbeat', (lsn: string, _time: number, shouldRespond: boolean) => {
      this.#heardAt = Date.now();
      // Postgres wants an answer soon (wal_sender_timeout): give the position already durable.
      if (shouldRespond) this.acknowledge(this.#acknowledged);
      this.#enqueue({ tag: 'keepalive', lsn: lsnToBigInt(lsn) });
    });
    const plugin = new TextPgoutputPlugin(
      options.publicationName,
      (client) => this.#prepare(client),
      (error) => {
        const reason = error instanceof Error ? error.message : String(error);
        this.#fail(
          new ReplicationError(
            `unreadable replication message: ${reason}`,
            'REPLICATION_UNDECODABLE',
            {
              cause: error,
            },
          ),
        );
      },
    );
    let onStart: () => void = () => undefined;
    this.#started = new Promise<void>((resolve) => (onStart = resolve));
    this.#service.on('start', () => {
      this.#heardAt = Date.now();
      this.#streaming = true;
      onStart();
      this.#statusTimer = setInterval(
        () => this.acknowledge(this.#acknowledged),
        this.#statusIntervalMs,
      );
    });
    this.ended = this.#service.subscribe(plugin, options.slotName, '0/0').then(
      () => this.#failure,
      (error: unknown) => this.#failure ?? toReplicationError(error),
    );
    void this.ended.then(() => this.#stopTimer());
    this.#watchdog = setInterval(
      () => this.#checkLiveness(),
      Math.max(100, options.livenessTimeoutMs / 6),
    );
  }

  /**
   * A connection can stay "up" while nothing crosses it (a partition the kernel will not notice
   * for hours). Once a third of the timeout passes in silence, status updates ask Postgres to
   * answer at once (it replies with a keepalive within milliseconds); after the whole timeout
   * with no answer the connection is given up. Connecting and setup count too, except while a
   * slot is being created (it waits for running transactions) and while shapes are set up.
   */
  #checkLiveness(): void {
    // Silence while Sluice itself is busy (a slot being created, setup rotating shapes, queued
    // messages being stored, the socket paused for backpressure) says nothing about the network.
    if (this.#closed || this.#waitingOnUs || this.#draining || this.#queue.length > 0) {
      this.#heardAt = Date.now();
      return;
    }
    const silentMs = Date.now() - this.#heardAt;
    const { livenessTimeoutMs } = this.#options;
    if (silentMs >= livenessTimeoutMs) {
      // Before streaming, silence means connecting or setting up got no answer.
      const [code, phase] = this.#streaming
        ? ['REPLICATION_SILENT', 'streaming']
        : ['CONNECT_TIMEOUT', 'connecting and setting up'];
      this.#fail(
        new ReplicationError(
          `no message from Postgres for ${silentMs} ms while ${phase} (liveness timeout ${livenessTimeoutMs} ms)`,
          code,
        ),
      );
    } else if (this.#streaming && silentMs >= livenessTimeoutMs / 3) {
      void this.#service.acknowledge(
        bigIntToLsn(this.#acknowledged > 0n ? this.#acknowledged - 1n : 0n),
        true,
      );
    }
  }

  /** Resolves once Postgres streams; rejects with the reason if the stream ends before that. */
  async started(): Promise<void> {
    await Promise.race([
      this.#started,
      this.ended.then((error) => {
        throw error ?? new ReplicationError('replication ended before it started', undefined);
      }),
    ]);
  }

  /** Confirms everything up to `lsn` as durably stored; Postgres may then recycle that WAL. */
  acknowledge(lsn: bigint): void {
    if (this.#closed) return;
    if (lsn > this.#acknowledged) this.#acknowledged = lsn;
    // Commit end LSNs and keepalive positions are already "last byte + 1", which is what the
    // status update carries; the library adds 1 itself, so it is handed one less. An exact
    // report matters: a shutting-down walsender waits until the flush position equals what it
    // sent, and Postgres's fast shutdown waits for it.
    if (this.#acknowledged > 0n)
      void this.#service.acknowledge(bigIntToLsn(this.#acknowledged - 1n));
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#stopTimer();
    // An orderly end waits for Postgres to close its side, which a partition never does: after
    // a moment the socket is destroyed.
    const destroying = this.#service.destroy().catch(() => undefined);
    const timer = setTimeout(() => this.#socket()?.destroy(), CLOSE_GRACE_MS);
    await destroying;
    clearTimeout(timer);
  }

  #stopTimer(): void {
    if (this.#statusTimer) clearInterval(this.#statusTimer);
    this.#statusTimer = undefined;
    clearInterval(this.#watchdog);
  }

  #fail(error: unknown): void {
    this.#failure ??= toReplicationError(error);
    void this.close();
  }

  async #prepare(client: Client): Promise<void> {
    const { slotName, publicationName } = this.#options;
    const system = await client.query<{ systemid: string; timeline: string }>('IDENTIFY_SYSTEM');
    const identity = system.rows[0];
    if (!identity) throw new ReplicationError('IDENTIFY_SYSTEM returned nothing', undefined);

    // Status updates go out at least every third of wal_sender_timeout (at most every 15 s), so
    // an idle but healthy stream is never cut by Postgres.
    const timeout = await client.query<{ ms: string }>(
      "SELECT setting::bigint * CASE unit WHEN 's' THEN 1000 ELSE 1 END AS ms FROM pg_settings WHERE name = 'wal_sender_timeout'",
    );
    const timeoutMs = Number(timeout.rows[0]?.ms ?? 60_000);
    this.#statusIntervalMs = Math.min(
      15_000,
      timeoutMs > 0 ? Math.max(1_000, timeoutMs / 3) : 15_000,
    );

    const walLevel = await client.query<{ wal_level: string }>('SHOW wal_level');
    if (walLevel.rows[0]?.wal_level !== 'logical') {
      throw new ReplicationError(
        `wal_level is "${walLevel.rows[0]?.wal_level}"; logical replication needs wal_level=logical`,
        '55000',
      );
    }
    // Two servers must never consume one slot: the lock lives as long as this connection.
    const locked = await client.query<{ locked: boolean }>(
      `SELECT pg_try_advisory_lock(${advisoryLockKey(slotName)}) AS locked`,
    );
    if (!locked.rows[0]?.locked) {
      throw new ReplicationError(`slot ${slotName} is in use by another Sluice server`, '55006');
    }
    const publication = await client.query(
      `SELECT 1 FROM pg_publication WHERE pubname = ${literal(publicationName)}`,
    );
    if (publication.rowCount === 0)
      await client.query(`CREATE PUBLICATION ${ident(publicationName)}`);

    const slot = await client.query<{ wal_status: string | null }>(
      `SELECT wal_status FROM pg_replication_slots WHERE slot_name = ${literal(slotName)}`,
    );
    let slotProblem: Problem | undefined;
    if (slot.rows[0]?.wal_status === 'lost') {
      slotProblem = {
        code: '55000',
        message: `replication slot "${slotName}" was invalidated (Postgres removed WAL it still needed, see max_slot_wal_keep_size)`,
      };
      await client.query(`DROP_REPLICATION_SLOT ${ident(slotName)}`);
    } else if (slot.rowCount === 0) {
      slotProblem = { code: '42704', message: `replication slot "${slotName}" does not exist` };
    }
    this.#waitingOnUs = true;
    try {
      if (slotProblem) {
        await client.query(
          `CREATE_REPLICATION_SLOT ${ident(slotName)} LOGICAL pgoutput NOEXPORT_SNAPSHOT`,
        );
      }
      await this.#handlers.onSetup({
        systemId: identity.systemid,
        timeline: Number(identity.timeline),
        slotProblem,
      });
    } finally {
      this.#waitingOnUs = false;
      this.#heardAt = Date.now();
    }
  }

  #enqueue(item: QueueItem): void {
    this.#queue.push(item);
    if (this.#queue.length >= QUEUE_HIGH_WATER) this.#socket()?.pause();
    if (!this.#draining) void this.#drain();
  }

  /** Handles queued messages one at a time, in the order Postgres sent them. */
  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      for (let item = this.#queue.shift(); item && !this.#failure; item = this.#queue.shift()) {
        if (item.tag === 'keepalive') {
          const safe = this.#handlers.onKeepalive(item.lsn);
          if (safe > this.#acknowledged) this.acknowledge(safe);
        } else {
          await this.#assemble(item);
        }
        if (this.#queue.length <= QUEUE_LOW_WATER) this.#socket()?.resume();
        this.#heardAt = Date.now();
      }
    } catch (error) {
      // A change that cannot be handled must not be skipped: end this stream; the next one
      // restarts from the slot.
      this.#fail(error);
    } finally {
      this.#draining = false;
    }
  }

  /** The replication socket: paused while the queue is long so memory stays bounded. */
  #socket(): { pause(): void; resume(): void; destroy(): void } | undefined {
    // The library keeps its pg connection private; its own flow control pauses the same stream.
    const service = this.#service as unknown as {
      _connection?: { stream?: { pause(): void; resume(): void; destroy(): void } };
    };
    return service._connection?.stream;
  }

  async #assemble(message: Pgoutput.Message): Promise<void> {
    switch (message.tag) {
      case 'begin':
        this.#pending = {
          xid: message.xid,
          commitLsn: lsnToBigInt(message.commitLsn ?? '0/0'),
          changes: [],
        };
        return;
      case 'relation':
        await this.#handlers.onRelation(toRelation(message));
        return;
      case 'insert':
        this.#push({ kind: 'insert', relation: toRelation(message.relation), newRow: message.new });
        return;
      case 'update':
        this.#push({
          kind: 'update',
          relation: toRelation(message.relation),
          oldRow: message.old ?? undefined,
          newRow: message.new,
        });
        return;
      case 'delete': {
        const oldRow = message.old ?? message.key;
        if (!oldRow) throw new ReplicationError('delete without old row', undefined);
        this.#push({ kind: 'delete', relation: toRelation(message.relation), oldRow });
        return;
      }
      case 'truncate':
        this.#push({ kind: 'truncate', relations: message.relations.map(toRelation) });
        return;
      case 'commit': {
        const pending = this.#pending;
        this.#pending = undefined;
        if (!pending) throw new ReplicationError('commit without begin', undefined);
        await this.#handlers.onTransaction({
          xid: pending.xid,
          commitLsn: lsnToBigInt(message.commitLsn ?? '0/0'),
          endLsn: lsnToBigInt(message.commitEndLsn ?? '0/0'),
          changes: pending.changes,
        });
        return;
      }
      default:
        return; // origin, type and logical messages carry nothing a shape needs
    }
  }

  #push(change: Change): void {
    if (!this.#pending)
      throw new ReplicationError(`${change.kind} outside a transaction`, undefined);
    this.#pending.changes.push(change);
  }
}

/** Relation objects are cached by the parser; copy what shapes need into a stable form. */
const relationCache = new WeakMap<Pgoutput.MessageRelation, RelationInfo>();
function toRelation(relation: Pgoutput.MessageRelation): RelationInfo {
  let info = relationCache.get(relation);
  if (!info) {
    info = {
      oid: relation.relationOid,
      schema: relation.schema,
      name: relation.name,
      columns: relation.columns.map((c) => ({
        name: c.name,
        typeOid: c.typeOid,
        typeMod: c.typeMod,
      })),
      keyColumns: relation.keyColumns,
    };
    relationCache.set(relation, info);
  }
  return info;
}

function toReplicationError(error: unknown): ReplicationError {
  if (error instanceof ReplicationError) return error;
  const e = error as { message?: string; code?: string };
  const code = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
  return new ReplicationError(e.message ?? String(error), code ?? e.code, { cause: error });
}

/** A stable 63-bit lock key per slot name. */
function advisoryLockKey(slotName: string): string {
  const digest = createHash('sha256').update(`sluice:${slotName}`).digest();
  return (digest.readBigUInt64BE(0) & 0x7fffffffffffffffn).toString();
}

/** Replication connections speak only the simple query protocol: no bind parameters. */
function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

function ident(value: string): string {
  return `"${value.replaceAll('"', '""')}"`;
}
