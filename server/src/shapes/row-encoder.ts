import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { EncodedRows } from '../storage/encoded-rows.js';
import type { MessageContext } from './change-messages.js';

/** What the encoder's thread is asked (`row-encoder-worker.ts`). */
export type EncoderRequest =
  | { type: 'start'; job: number; context: MessageContext; select: readonly string[] }
  /** Answered by one `rows` or `error` reply, in order. */
  | { type: 'copy'; job: number; bytes: ArrayBuffer }
  /** The COPY data ended: answered like a `copy` (with no rows, or the error of a cut row). */
  | { type: 'end'; job: number }
  | { type: 'cancel'; job: number };

/** What it answers. After an `error`, a job gets no more replies. */
export type EncoderReply =
  | { type: 'rows'; job: number; bytes: ArrayBuffer; length: number; ends: Int32Array }
  | { type: 'error'; job: number; name: string; message: string };

/** COPY chunks a job may have at the thread before it waits for their rows: bounds memory. */
const MAX_IN_FLIGHT = 4;
/** The thread ends after this long without a job: it holds 10 to 40 MB (its heap) while it lives. */
const DEFAULT_IDLE_MS = 10_000;

interface Owed {
  resolve(rows: EncodedRows): void;
  reject(error: Error): void;
}

interface Job {
  /** Replies owed, oldest first. */
  owed: Owed[];
  failure: Error | undefined;
}

/**
 * Turns snapshots' COPY text into their rows' JSON on a thread of its own, so a large initial
 * sync keeps both cores busy: Postgres's COPY and the server's other work on one, parsing,
 * building and encoding the rows (most of a snapshot's time) on the other
 * (docs/performance.md, "Where the time goes"). The thread starts with the first snapshot and
 * ends when idle; any number of snapshots share it. The server's own thread then only copies
 * each row's bytes into the log.
 */
export class RowEncoder {
  #worker: Worker | undefined;
  #nextJob = 1;
  readonly #jobs = new Map<number, Job>();
  #idleTimer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #idleMs: number;

  constructor(options: { idleMs?: number } = {}) {
    this.#idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
  }

  /** Whether its thread is running (between a snapshot and the idle time after the last). */
  get threadRunning(): boolean {
    return this.#worker !== undefined;
  }

  /**
   * The rows of a COPY TEXT stream of `select` (in that order) as `context`'s snapshot insert
   * messages, in batches, in order. Stopping early (an error, or the consumer leaving) cancels
   * the rest; a malformed stream throws what the COPY parser found.
   */
  async *encode(
    source: AsyncIterable<Uint8Array>,
    context: MessageContext,
    select: readonly string[],
  ): AsyncGenerator<EncodedRows, void, undefined> {
    if (this.#closed) throw new Error('the row encoder is closed');
    const worker = this.#start();
    const id = this.#nextJob++;
    const job: Job = { owed: [], failure: undefined };
    this.#jobs.set(id, job);
    const waiting: Promise<EncodedRows>[] = [];
    const ask = (request: EncoderRequest, transfer: ArrayBuffer[] = []) => {
      if (job.failure) throw job.failure;
      const reply = new Promise<EncodedRows>((resolve, reject) =>
        job.owed.push({ resolve, reject }),
      );
      // Awaited in order below; until then a failure must not count as unhandled.
      reply.catch(() => undefined);
      waiting.push(reply);
      worker.postMessage(request, transfer);
    };
    let ended = false;
    try {
      worker.postMessage({ type: 'start', job: id, context, select } satisfies EncoderRequest);
      for await (const chunk of source) {
        // A copy of its own, handed over whole: the stream may reuse the chunk's memory.
        const bytes = new Uint8Array(chunk).buffer;
        ask({ type: 'copy', job: id, bytes }, [bytes]);
        while (waiting.length >= MAX_IN_FLIGHT) yield* rowsOf(await waiting.shift()!);
      }
      ask({ type: 'end', job: id });
      while (waiting.length > 0) yield* rowsOf(await waiting.shift()!);
      ended = true;
    } finally {
      this.#jobs.delete(id);
      if (!ended && this.#worker === worker) {
        worker.postMessage({ type: 'cancel', job: id } satisfies EncoderRequest);
      }
      this.#idleLater();
    }
  }

  /** Ends the thread; snapshots still encoding fail. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#stop();
  }

  /** The thread, started if need be; it keeps the process alive while it has a job. */
  #start(): Worker {
    clearTimeout(this.#idleTimer);
    if (this.#worker) {
      this.#worker.ref();
      return this.#worker;
    }
    const worker = startThread();
    worker.on('message', (reply: EncoderReply) => this.#replied(reply));
    worker.on('error', (error) => this.#lost(worker, error));
    worker.on('exit', (code) => {
      this.#lost(worker, new Error(`the row encoder's thread exited (code ${code})`));
    });
    this.#worker = worker;
    return worker;
  }

  #replied(reply: EncoderReply): void {
    const job = this.#jobs.get(reply.job);
    const owed = job?.owed.shift();
    if (!job || !owed) return;
    if (reply.type === 'rows') {
      owed.resolve({ bytes: Buffer.from(reply.bytes, 0, reply.length), ends: reply.ends });
      return;
    }
    const error = new Error(reply.message);
    error.name = reply.name;
    this.#fail(job, error, owed);
  }

  /** The thread failed or ended: every job waiting on it fails, and the next one starts another. */
  #lost(worker: Worker, error: Error): void {
    if (this.#worker !== worker) return;
    this.#worker = undefined;
    for (const job of this.#jobs.values()) this.#fail(job, error);
  }

  #fail(job: Job, error: Error, first?: Owed): void {
    job.failure ??= error;
    first?.reject(error);
    for (const owed of job.owed.splice(0)) owed.reject(error);
  }

  #idleLater(): void {
    if (this.#jobs.size > 0 || !this.#worker) return;
    // Idle, it does not keep the process alive (nor does the timer that ends it).
    this.#worker.unref();
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => void this.#stop(), this.#idleMs);
    this.#idleTimer.unref();
  }

  async #stop(): Promise<void> {
    clearTimeout(this.#idleTimer);
    const worker = this.#worker;
    if (!worker) return;
    this.#lost(worker, new Error('the row encoder was stopped'));
    await worker.terminate();
  }
}

/** A batch, unless it has no rows (a chunk holding no whole row, or the end). */
function rowsOf(batch: EncodedRows): EncodedRows[] {
  return batch.ends.length > 0 ? [batch] : [];
}

/**
 * The thread, running `row-encoder-worker` beside this module: compiled (.js), or from source
 * (.ts) under tsx, as the tests run. Node 20 does not carry tsx's module hooks (`--import tsx`)
 * into a thread, so one run from source registers them itself first.
 */
function startThread(): Worker {
  const entry = new URL(`./row-encoder-worker${path.extname(import.meta.url)}`, import.meta.url);
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry);
  const script = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(script, { eval: true });
}
