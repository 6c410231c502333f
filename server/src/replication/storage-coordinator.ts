import type { FastifyBaseLogger } from 'fastify';
import { SluiceError, shuttingDown } from '../errors/sluice-error.js';
import { definitionKey, type ShapeDefinition } from '../shapes/shape-definition.js';
import { parseShapeEvent, type ForwardedError, type ShapeEvent } from '../shapes/shape-events.js';
import type { ShapeRegistry } from '../shapes/shape-registry.js';
import { WriterLink } from '../shapes/writer-link.js';
import type { StatusMonitor } from '../status/status-monitor.js';
import type { ShapeStorage, StorageChannel } from '../storage/shape-storage.js';

/** The storage record naming the server that writes a shared storage. */
const WRITER_RECORD = 'writer';

interface WriterRecord {
  instance: string;
  since: string;
}

export interface StorageCoordinatorOptions {
  storage: ShapeStorage;
  channel: StorageChannel;
  /** This server's id among those sharing the storage. */
  instance: string;
  registry: ShapeRegistry;
  status: StatusMonitor;
  /** How often the writer beats (`SLUICE_WRITER_HEARTBEAT_MS`). */
  heartbeatMs: number;
  /** A reader that has not heard the writer for this long is in fallback (`SLUICE_WRITER_SILENT_MS`). */
  silentMs: number;
  /** While this server writes: the replication position every shape has durably seen. */
  durableLsn(): bigint;
  log: FastifyBaseLogger;
}

/**
 * One server among several sharing a storage (Redis; docs/operations.md, "Several servers"). The
 * one holding the replication lock writes: it announces each flush round, the shapes it removes
 * and a heartbeat, and creates and deletes shapes the others ask for. The others read: they
 * serve the stored shapes, refresh a log when its flush is announced (which wakes its long-polls
 * and sockets), ask the writer for new shapes, and are live while the writer beats and streams.
 * Messages can be lost (pub/sub keeps nothing): a reader that sees the writer's flush count
 * jump, or that subscribes again, reads everything from the storage (`ShapeRegistry.resync`).
 */
export class StorageCoordinator {
  readonly #options: StorageCoordinatorOptions;
  readonly #link: WriterLink;
  readonly #timer: NodeJS.Timeout;
  #role: 'waiting' | 'writer' | 'reader' = 'waiting';
  /** Writer: flush rounds announced. Reader: the last one heard of. */
  #seq = 0;
  /** Reader: the writer heard from last, when, and what it said. */
  #writer: { instance: string; at: number; live: boolean; lsn: bigint } | undefined;
  /** Reader: when it began reading (until it hears the writer, it stays `starting` that long). */
  #readingSince = 0;
  #closed = false;

  constructor(options: StorageCoordinatorOptions) {
    this.#options = options;
    this.#link = new WriterLink(options.instance, (event) => this.#publish(event));
    options.channel.onMessage((message) => this.#received(message));
    options.channel.onSubscribed(() => {
      if (this.#role === 'reader') this.#resync();
    });
    options.registry.onRemoved((handle) => {
      if (this.#role === 'writer') this.#announce({ type: 'removed', handles: [handle] });
    });
    this.#timer = setInterval(() => this.#beat(), options.heartbeatMs);
    this.#timer.unref();
  }

  get instance(): string {
    return this.#options.instance;
  }

  /** Whether this server reads what another writes. */
  get reading(): boolean {
    return this.#role === 'reader';
  }

  /** Reader: the replication position the writer last said every shape has durably seen. */
  writerLsn(): bigint {
    return this.#writer?.lsn ?? 0n;
  }

  /**
   * This server holds the replication lock, before its stream starts: it writes the storage from
   * now on, and its shapes must be what the storage holds. A reader catches its logs up with
   * what the last writer stored; a server that held none loads them; one that wrote before and
   * lost the lock for a while reloads them (its logs' view is stale). Then it names itself.
   */
  async lead(): Promise<void> {
    const { registry, storage, status, instance, log } = this.#options;
    const previous = await readWriter(storage);
    // Before the logs are read: a writer that lost the lock can no longer change them after.
    await storage.claimWriter();
    if (registry.following) {
      await registry.lead();
    } else if (!registry.loadStarted) {
      registry.load();
      await registry.loaded;
    } else if (previous !== undefined && previous.instance !== instance) {
      log.warn(
        { previous: previous.instance },
        'another server wrote the shapes meanwhile: reloading them',
      );
      await registry.reload();
    }
    const record: WriterRecord = { instance, since: new Date().toISOString() };
    await storage.writeRecord(WRITER_RECORD, JSON.stringify(record));
    this.#role = 'writer';
    this.#writer = undefined;
    // Requests still waiting for another writer: the client asks again, and this server answers.
    this.#link.close(
      new SluiceError('SLUICE_ERR_NOT_READY', 'this server took over writing the shapes; retry', {
        retryAfterS: 1,
      }),
    );
    status.writing();
    status.reportStorageServers(instance, instance);
    log.info({ instance }, 'this server writes the shared shape storage');
  }

  /**
   * Another server holds the lock: this one serves what it writes. Called at every failed try to
   * take the lock; only the first loads the shapes.
   */
  async follow(): Promise<void> {
    const { registry, storage, status, instance } = this.#options;
    if (this.#role !== 'reader') {
      const writer = await readWriter(storage).catch(() => undefined);
      status.reportStorageServers(instance, writer?.instance ?? null);
      this.#role = 'reader';
      this.#readingSince = Date.now();
    }
    await registry.follow(this.#link);
    this.#reportReading();
  }

  /**
   * Reader: live while the writer beats and streams. Until it is first heard (within a heartbeat
   * of starting to read, normally) the state stays `starting`, where requests are served from the
   * logs; only a writer silent for `silentMs` makes it fallback.
   */
  #reportReading(): void {
    const waited = Date.now() - this.#readingSince >= this.#options.silentMs;
    if (this.#writer !== undefined || waited) this.#options.status.readingFrom(this.#writerLive());
  }

  /** Writer: a flush round made these shapes' new entries durable, up to `lsn` for every shape. */
  flushed(handles: string[], lsn: bigint): void {
    if (this.#role !== 'writer') return;
    this.#seq++;
    this.#announce({ type: 'flushed', seq: this.#seq, lsn: String(lsn), handles });
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#link.close(shuttingDown());
  }

  #beat(): void {
    if (this.#role === 'writer') {
      const { inputs } = this.#options.status;
      const live = inputs.replication === 'streaming' && inputs.storage === 'up';
      const lsn = String(this.#options.durableLsn());
      this.#announce({ type: 'heartbeat', seq: this.#seq, lsn, live });
    } else if (this.#role === 'reader') {
      this.#reportReading();
    }
  }

  #writerLive(): boolean {
    const writer = this.#writer;
    return writer !== undefined && writer.live && Date.now() - writer.at < this.#options.silentMs;
  }

  #received(message: string): void {
    const event = parseShapeEvent(message);
    if (!event || event.from === this.#options.instance || this.#closed) return;
    if (this.#role === 'writer') this.#answer(event);
    else if (this.#role === 'reader') this.#follow(event);
  }

  /** Writer: a reader's request. */
  #answer(event: ShapeEvent): void {
    const { registry } = this.#options;
    if (event.type === 'create') {
      void this.#create(event.definition);
    } else if (event.type === 'delete') {
      const shape = registry.held(event.handle);
      if (!shape) this.#announce({ type: 'removed', handles: [event.handle] });
      else
        void registry
          .deleteWhenCreated(shape)
          .catch((error: unknown) =>
            this.#options.log.warn({ err: error }, 'deleting a shape a reader asked to failed'),
          );
    } else if (event.type === 'read') {
      for (const handle of event.handles) registry.held(handle)?.markRead();
    }
  }

  /** Writer: makes the shape a reader asked for, as a request here would, and says which it is. */
  async #create(definition: ShapeDefinition): Promise<void> {
    const { registry } = this.#options;
    const key = definitionKey(definition);
    try {
      const existing = registry.find(definition);
      // The table may have been dropped or renamed since the shape was made.
      if (existing?.ready) await registry.stillCurrent(existing);
      const shape = await registry.getOrCreate(definition);
      // A shape is ready in memory a moment before its metadata says so in the storage, where the
      // reader reads it: announced once its creation has ended.
      await registry.created(shape);
      const failure = shape.deleted
        ? (shape.snapshotFailure ?? 'the shape was deleted')
        : undefined;
      this.#announce(
        failure === undefined
          ? { type: 'created', key, handle: shape.handle }
          : { type: 'create-failed', key, error: forwarded(failure) },
      );
    } catch (error) {
      this.#announce({ type: 'create-failed', key, error: forwarded(error) });
    }
  }

  /** Reader: what the writer announced, or its answer to a request. */
  #follow(event: ShapeEvent): void {
    const { registry } = this.#options;
    if (event.type === 'removed') {
      // Forgotten before a DELETE waiting for it is answered: a request right after finds none.
      for (const handle of event.handles) void registry.forgetRemoved(handle);
    }
    this.#link.answered(event);
    if (event.type === 'flushed') {
      this.#heard(event.from, event.lsn, this.#writer?.live ?? true);
      this.#seq = event.seq;
      for (const handle of event.handles) {
        const shape = registry.held(handle);
        if (shape) void registry.refresh(shape);
      }
    } else if (event.type === 'heartbeat') {
      const other = this.#writer?.instance !== event.from;
      this.#heard(event.from, event.lsn, event.live);
      // A flush announcement missed, or a new writer: read what the storage holds now.
      if (other || event.seq !== this.#seq) {
        this.#seq = event.seq;
        this.#resync();
      }
      this.#reportReading();
    }
  }

  #heard(instance: string, lsn: string, live: boolean): void {
    if (this.#writer?.instance !== instance) {
      this.#options.status.reportStorageServers(this.#options.instance, instance);
    }
    this.#writer = { instance, at: Date.now(), live, lsn: BigInt(lsn) };
  }

  #resync(): void {
    this.#options.registry.resync().catch((error: unknown) => {
      this.#options.log.warn({ err: error }, 'reading the shared storage again failed');
    });
  }

  #announce(event: DistributiveOmit<ShapeEvent, 'from'>): void {
    this.#publish({ ...event, from: this.#options.instance }).catch(() => undefined);
  }

  #publish(event: ShapeEvent): Promise<void> {
    return this.#options.channel.publish(JSON.stringify(event));
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A creation's failure as a reader's request gets it: coded errors as they are, others a 503. */
function forwarded(error: unknown): ForwardedError {
  if (error instanceof SluiceError) {
    return { code: error.code, message: error.message, details: { ...error.details } };
  }
  const reason = error instanceof Error ? error.message : String(error);
  const message = `the server that writes the shapes could not make this one (${reason}); retry shortly`;
  return { code: 'SLUICE_ERR_NOT_READY', message, details: { retryAfterS: 1 } };
}

/** The server that last took the shared storage over, if any did. */
async function readWriter(storage: ShapeStorage): Promise<WriterRecord | undefined> {
  const text = await storage.readRecord(WRITER_RECORD);
  try {
    return text === undefined ? undefined : (JSON.parse(text) as WriterRecord);
  } catch {
    return undefined;
  }
}
