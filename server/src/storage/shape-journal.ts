import { mkdir, open, readFile, readdir, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { bulkhead } from 'cockatiel';
import { chunkFileName, syncDirectory, writeAll, writeAllOf } from './chunk-file.js';

/** A log with bytes in the journal that its own files may not hold yet. */
export interface JournalClient {
  /** Writes those bytes into its files and syncs them (the journal may then forget them). */
  checkpoint(): Promise<void>;
}

export interface ShapeJournalOptions {
  /** A segment holding this many bytes is checkpointed and removed. */
  segmentBytes: number;
  /** A segment with records is checkpointed at least this often. */
  checkpointMs: number;
}

/**
 * Logs a checkpoint writes at once. Each costs a few writes and syncs, all done by libuv's four
 * threads: thousands started together (every shape created in the last 30 s) only wait there,
 * each holding its buffers, promises and file handles. Measure 6 of docs/performance.md (10,000
 * shapes made) found 9.5 kB of RSS per shape with all at once, 5.3 kB with this.
 */
const CHECKPOINT_CONCURRENCY = 16;
const SEGMENT_PATTERN = /^journal-(\d+)\.log$/;
/** Record header: the body's length and its CRC-32. */
const HEADER_BYTES = 8;
const WRITE = 1;
const FORGET = 2;

interface Segment {
  number: number;
  file: string;
  handle: FileHandle | undefined;
  bytes: number;
  /** Logs with records in this segment. */
  clients: Set<JournalClient>;
}

interface Queued {
  bytes: Buffer[];
  client: JournalClient | undefined;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * The disk storage's journal (docs/architecture.md, "Shape logs on disk"): one append-only file
 * that makes the new lines of every shape log durable with one `write` and one `fdatasync` per
 * flush round, however many shapes the round touched, where each log's own file would cost a
 * `write` and an `fdatasync` each. A record says "these bytes belong at this position of this
 * chunk file" (seal lines included; the file need not exist yet); the chunk files get them
 * later, at a checkpoint (each log writes and syncs what it journaled, and indexes what it
 * sealed), and the journal segment is then deleted. After a crash, `open` writes every
 * record back where it belongs, in order, before any log is opened: a chunk file then holds
 * every acknowledged line, as it would had it been synced itself.
 *
 * A shape that is removed gets a `forget` record: its earlier records are not replayed, so a
 * later shape in the same folder never receives them. A log that cuts its chunks (truncateAfter)
 * checkpoints first, so no record can write back what the cut removed.
 */
export class ShapeJournal {
  readonly #dir: string;
  readonly #options: ShapeJournalOptions;
  #segment: Segment;
  /** Segments rotated out whose checkpoint has not finished. */
  #retired: Segment[] = [];
  #queued: Queued[] = [];
  #scheduled = false;
  /** Writes, rotations and closing, one at a time. */
  #io: Promise<unknown> = Promise.resolve();
  #checkpointing: Promise<void> | undefined;
  readonly #timer: NodeJS.Timeout;
  #closed = false;

  private constructor(dir: string, options: ShapeJournalOptions, segment: Segment) {
    this.#dir = dir;
    this.#options = options;
    this.#segment = segment;
    this.#timer = setInterval(() => {
      if (this.#segment.bytes > 0) this.#checkpointInBackground();
    }, options.checkpointMs);
    this.#timer.unref();
  }

  /**
   * Opens the journal in `dir` for the shape logs under `shapesDir`: writes back the records a
   * crash left, syncs the files they went to and deletes them, then starts a new segment.
   */
  static async open(
    dir: string,
    shapesDir: string,
    options: ShapeJournalOptions,
  ): Promise<ShapeJournal> {
    await mkdir(dir, { recursive: true });
    const numbers = (await readdir(dir))
      .map((name) => SEGMENT_PATTERN.exec(name)?.[1])
      .filter((number) => number !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    const files = numbers.map((number) => path.join(dir, segmentName(number)));
    await replay(files, shapesDir);
    for (const file of files) await rm(file, { force: true });
    const segment = await startSegment(dir, (numbers.at(-1) ?? 0) + 1);
    return new ShapeJournal(dir, options, segment);
  }

  /**
   * Records that `bytes` belong at `position` of chunk `chunk` of shape `shape`; resolves once
   * the record is durable. Records given before the journal's next write share it.
   */
  record(
    client: JournalClient,
    shape: string,
    chunk: number,
    position: number,
    bytes: readonly Buffer[],
  ): Promise<void> {
    const head = Buffer.allocUnsafe(3 + Buffer.byteLength(shape) + 10);
    let at = head.writeUInt8(WRITE, 0);
    at = head.writeUInt16BE(Buffer.byteLength(shape), at);
    at += head.write(shape, at, 'utf8');
    at = head.writeUInt32BE(chunk, at);
    head.writeUIntBE(position, at, 6);
    return this.#enqueue([head, ...bytes], client);
  }

  /** Records that shape `shape` is removed; resolves once that is durable. */
  forget(shape: string): Promise<void> {
    const body = Buffer.allocUnsafe(3 + Buffer.byteLength(shape));
    body.writeUInt8(FORGET, 0);
    body.writeUInt16BE(Buffer.byteLength(shape), 1);
    body.write(shape, 3, 'utf8');
    return this.#enqueue([body], undefined);
  }

  /**
   * Makes every record written so far redundant: later records go to a new segment, every log
   * with records in the old ones writes and syncs them into its own files, and the old segments
   * are deleted. Calls while one runs share it.
   */
  checkpoint(): Promise<void> {
    this.#checkpointing ??= this.#checkpoint().finally(() => {
      this.#checkpointing = undefined;
    });
    return this.#checkpointing;
  }

  /**
   * Checkpoints (the logs are closed by then: their files hold everything) and stops. Segments a
   * checkpoint could not retire (a log failed to write its files) are kept for the next start to
   * write back.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#timer);
    const retired = await this.checkpoint().then(
      () => true,
      () => false,
    );
    this.#closed = true;
    await this.#onIo(async () => {
      for (const segment of [...this.#retired, this.#segment]) {
        await segment.handle?.close();
        segment.handle = undefined;
      }
      // Records written after the checkpoint (none, when every log was closed first) are kept too.
      if (!retired || this.#segment.bytes > 0) return;
      await rm(this.#segment.file, { force: true });
      await syncDirectory(this.#dir);
    });
  }

  #enqueue(body: Buffer[], client: JournalClient | undefined): Promise<void> {
    if (this.#closed) return Promise.reject(new Error(`shape journal ${this.#dir} is closed`));
    const header = Buffer.allocUnsafe(HEADER_BYTES);
    header.writeUInt32BE(
      body.reduce((sum, part) => sum + part.length, 0),
      0,
    );
    header.writeUInt32BE(
      body.reduce((crc, part) => crc32(part, crc), 0),
      4,
    );
    return new Promise<void>((resolve, reject) => {
      this.#queued.push({ bytes: [header, ...body], client, resolve, reject });
      if (this.#scheduled) return;
      this.#scheduled = true;
      // After the current turn of the event loop: every log flushed in it joins this write.
      setImmediate(() => void this.#onIo(() => this.#write()));
    });
  }

  /** Writes and syncs every queued record in one go, then settles their promises. */
  async #write(): Promise<void> {
    const batch = this.#queued;
    this.#queued = [];
    this.#scheduled = false;
    if (batch.length === 0) return;
    const segment = this.#segment;
    try {
      // One writev of every record's pieces: joining them first would copy megabytes into
      // fresh memory each round.
      const buffers = batch.flatMap((item) => item.bytes);
      await writeAllOf(segment.handle!, buffers);
      await segment.handle!.datasync();
      segment.bytes += buffers.reduce((sum, buffer) => sum + buffer.length, 0);
    } catch (error) {
      // What the failed write left in the segment is unknown: later records go to a new one,
      // and this one stays (its good records replay) until a checkpoint can retire it.
      for (const item of batch) item.reject(error);
      await this.#rotate().catch(() => undefined);
      return;
    }
    for (const item of batch) {
      if (item.client) segment.clients.add(item.client);
      item.resolve();
    }
    if (segment.bytes >= this.#options.segmentBytes) this.#checkpointInBackground();
  }

  async #checkpoint(): Promise<void> {
    const retired = await this.#onIo(async () => {
      if (this.#segment.bytes > 0) await this.#rotate();
      return [...this.#retired];
    });
    if (retired.length === 0) return;
    const clients = new Set(retired.flatMap((segment) => [...segment.clients]));
    const writing = bulkhead(CHECKPOINT_CONCURRENCY, Infinity);
    await Promise.all([...clients].map((client) => writing.execute(() => client.checkpoint())));
    for (const segment of retired) {
      await segment.handle?.close();
      segment.handle = undefined;
      await rm(segment.file, { force: true });
    }
    // Durably gone before anything relies on it (a cut after this must not be undone by them).
    await syncDirectory(this.#dir);
    this.#retired = this.#retired.filter((segment) => !retired.includes(segment));
  }

  #checkpointInBackground(): void {
    // A failure leaves the segments to the next checkpoint, or to replay after a restart; the
    // logs that could not write their files have failed themselves and say so.
    this.checkpoint().catch(() => undefined);
  }

  /** Starts the next segment; runs on the I/O queue, between writes. */
  async #rotate(): Promise<void> {
    const next = await startSegment(this.#dir, this.#segment.number + 1);
    this.#retired.push(this.#segment);
    this.#segment = next;
  }

  #onIo<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#io.then(operation);
    this.#io = result.catch(() => undefined);
    return result;
  }
}

function segmentName(number: number): string {
  return `journal-${String(number).padStart(6, '0')}.log`;
}

/** A new, empty segment whose directory entry is durable before any record relies on it. */
async function startSegment(dir: string, number: number): Promise<Segment> {
  const file = path.join(dir, segmentName(number));
  const handle = await open(file, 'wx');
  await syncDirectory(dir);
  return { number, file, handle, bytes: 0, clients: new Set() };
}

interface WriteRecord {
  shape: string;
  chunk: number;
  position: number;
  bytes: Buffer;
}

/**
 * Writes the records of `files` (segments, oldest first) back into the chunk files, in order
 * (a chunk's file is complete and synced before the next chunk's gets anything), and syncs
 * those files. A segment is read up to its first record that is torn or fails its checksum (a
 * crash during its last write: that record was never acknowledged). A record for a shape whose
 * folder is gone is skipped.
 */
async function replay(files: string[], shapesDir: string): Promise<void> {
  const byFile = new Map<string, WriteRecord[]>();
  for (const file of files) {
    for (const record of readRecords(await readFile(file))) {
      if ('forget' in record) {
        const prefix = path.join(shapesDir, record.forget) + path.sep;
        for (const key of byFile.keys()) if (key.startsWith(prefix)) byFile.delete(key);
        continue;
      }
      const target = path.join(shapesDir, record.shape, chunkFileName(record.chunk));
      let list = byFile.get(target);
      if (!list) byFile.set(target, (list = []));
      list.push(record);
    }
  }
  const created = new Set<string>();
  for (const [target, records] of byFile) {
    const handle = await openForReplay(target, created);
    if (!handle) continue;
    try {
      for (const record of records) await writeAll(handle, record.bytes, record.position);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }
  // The segments are deleted next: the files made here must be durably there first.
  for (const dir of created) await syncDirectory(dir);
}

/**
 * The chunk file a record goes to, made when it is missing: a log journals the chunks it seals
 * and the one after before their files exist (the checkpoint makes them). Undefined when the
 * shape's folder is gone (removed without a forget reaching the journal: nothing to restore).
 */
async function openForReplay(
  target: string,
  created: Set<string>,
): Promise<FileHandle | undefined> {
  const missing = (error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  };
  const existing = await open(target, 'r+').catch(missing);
  if (existing) return existing;
  // Not 'a': positional writes to a file opened for appending go to its end on Linux.
  const made = await open(target, 'wx').catch(missing);
  if (made) created.add(path.dirname(target));
  return made;
}

function* readRecords(bytes: Buffer): Generator<WriteRecord | { forget: string }> {
  let at = 0;
  while (at + HEADER_BYTES <= bytes.length) {
    const length = bytes.readUInt32BE(at);
    const end = at + HEADER_BYTES + length;
    if (length < 3 || end > bytes.length) return;
    const body = bytes.subarray(at + HEADER_BYTES, end);
    if (crc32(body) !== bytes.readUInt32BE(at + 4)) return;
    at = end;
    const kind = body.readUInt8(0);
    const nameEnd = 3 + body.readUInt16BE(1);
    const shape = body.toString('utf8', 3, nameEnd);
    // A name is one folder under shapes/ (handles are); anything else is not this journal's.
    if (shape === '' || shape.includes('/') || shape.includes('\\') || shape.startsWith('.')) {
      return;
    }
    if (kind === FORGET) {
      yield { forget: shape };
    } else if (kind === WRITE && nameEnd + 10 <= body.length) {
      yield {
        shape,
        chunk: body.readUInt32BE(nameEnd),
        position: body.readUIntBE(nameEnd + 4, 6),
        bytes: body.subarray(nameEnd + 10),
      };
    } else {
      return;
    }
  }
}
