import { bigIntToLsn, lsnToBigInt } from '@sluice/protocol';
import type { Client } from 'pg';
import { LogicalReplicationService, type Pgoutput } from 'pg-logical-replication';
import type { PublishMode } from '../config/config-options.js';
import type { Problem } from '../pg/describe-problem.js';
import { ReplicationError, toReplicationError } from './replication-error.js';
import { claimSlot, createSlot } from './replication-slot.js';
import { TextPgoutputPlugin } from './text-pgoutput-plugin.js';
import { TransactionAssembler, type AssemblyHandlers } from './transaction-assembler.js';

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

export interface ReplicationStreamHandlers extends AssemblyHandlers {
  /** Runs before streaming starts; may rotate shapes when continuity broke. */
  onSetup(setup: StreamSetup): Promise<void>;
  /** Postgres has sent everything up to `lsn`; returns the position safe to acknowledge. */
  onKeepalive(lsn: bigint): bigint;
}

export interface ReplicationStreamOptions {
  connectionString: string;
  /** libpq `options` (session settings that shape the text of values). */
  sessionOptions: string;
  slotName: string;
  publicationName: string;
  /** SLUICE_PUBLISH: whether setup may create the publication. */
  publish: PublishMode;
  /** Silence (no message, no answer to a ping) after which the connection is given up. */
  livenessTimeoutMs: number;
}

type QueueItem = Pgoutput.Message | { tag: 'keepalive'; lsn: bigint };

/** Queue lengths (messages) at which the socket is paused and resumed. */
const QUEUE_HIGH_WATER = 10_000;
const QUEUE_LOW_WATER = 1_000;
/** How long closing waits for an orderly end before destroying the socket. */
const CLOSE_GRACE_MS = 1_000;

/**
 * One replication connection, from setup to its end. It is never reused: after any failure the
 * owner builds a new one that restarts from the slot and drops replays (docs/architecture.md
 * invariant 2). Acknowledgements are sent only for positions the owner says are durable
 * (invariant 1).
 */
export class ReplicationStream {
  readonly #service: LogicalReplicationService;
  readonly #handlers: ReplicationStreamHandlers;
  readonly #options: ReplicationStreamOptions;
  readonly #assembler: TransactionAssembler;
  #acknowledged = 0n;
  #statusTimer: NodeJS.Timeout | undefined;
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
  #onClosed: () => void = () => undefined;

  constructor(options: ReplicationStreamOptions, handlers: ReplicationStreamHandlers) {
    this.#options = options;
    this.#handlers = handlers;
    this.#assembler = new TransactionAssembler(handlers);
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
    // Closing ends the stream even when the library never settles its promise (a stream
    // destroyed while it connects): whoever waits on `ended` or `started()` must not hang.
    const closed = new Promise<void>((resolve) => (this.#onClosed = resolve));
    this.ended = Promise.race([
      this.#service.subscribe(plugin, options.slotName, '0/0').then(
        () => this.#failure,
        (error: unknown) => this.#failure ?? toReplicationError(error),
      ),
      closed.then(() => this.#failure),
    ]);
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
    this.#onClosed();
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

  /** Runs on the replication connection before START_REPLICATION (see TextPgoutputPlugin). */
  async #prepare(client: Client): Promise<void> {
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

    const slotProblem = await claimSlot(client, this.#options);
    // Creating a slot waits for running transactions and setup may rotate shapes: neither
    // silence is the network's (see #checkLiveness).
    this.#waitingOnUs = true;
    try {
      if (slotProblem) await createSlot(client, this.#options.slotName);
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
          const handled = this.#assembler.add(item);
          if (handled) await handled;
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
}
