import type { LogOffset } from '@sluice/protocol';
import type { EncodedRows } from './encoded-rows.js';

/** One entry of a shape log. */
export interface LogEntry {
  offset: LogOffset;
  /** One protocol message, already serialised; stored and served byte for byte. */
  json: string;
}

export interface ReadResult {
  /**
   * JSON texts of the entries strictly after `after`, up to the end of one chunk (decoded from
   * the log's bytes each time this is read).
   */
  readonly entries: string[];
  /**
   * `[<entries>,<extra>…]` as UTF-8 bytes: the entries' bytes copied as the log holds them, then
   * `extra`, JSON texts of the response's own (its up-to-date message).
   */
  jsonArray(extra: readonly string[]): Buffer;
  /** Offset of the last returned entry, undefined when none was returned. */
  lastOffset: LogOffset | undefined;
  /** Nothing durable exists after the last returned entry (or after `after` if none). */
  reachedEnd: boolean;
}

/**
 * The durable, append-only, chunked log of one shape (docs/protocol.md §3), as the rest of the
 * server uses it, whatever holds it. Chunk boundaries are fixed when a chunk is sealed and never
 * move, so a response (which never crosses a boundary) is the same whenever it is asked for.
 * Writes, flushes, truncation and close run one at a time. Every backend passes the contract
 * suite in `shape-storage-contract.ts`.
 */
export interface ShapeLog {
  /** Where the log lives, for messages and cache keys (a folder, a Redis key prefix). */
  readonly location: string;
  /** Last appended offset, durable or not. */
  readonly lastOffset: LogOffset | undefined;
  /** Last offset that a completed flush made durable and visible to read(). */
  readonly durableOffset: LogOffset | undefined;
  /** What the log holds, or will once appended entries are flushed, in bytes. */
  readonly sizeBytes: number;
  /**
   * Buffers entries (one transaction, or snapshot rows). A chunk is sealed right after the entry
   * that brings it to the chunk size; `sealChunk` also seals the chunk holding the last entry.
   * Offsets must increase; two entries may share a snapshot offset (tx 0) only inside one chunk.
   * Throws, changing nothing, when the order is broken. Returns how many chunks it sealed.
   */
  append(entries: readonly LogEntry[], options?: { sealChunk?: boolean }): number;
  /**
   * Appends snapshot rows (their JSON as UTF-8) as `append` would one by one, the first at `0_op`
   * and each after a seal at the next op (snapshot chunk c holds `0_c`). Returns how many chunks
   * it sealed.
   */
  appendSnapshotRows(op: number, rows: EncodedRows): number;
  /** Makes everything appended before the call durable and visible. */
  flush(): Promise<void>;
  /** Whether a sealed, durable chunk holds entries after `after`. */
  hasSealedAfter(after: LogOffset | 'before-all'): boolean;
  /** The durable entries after `after`, up to the end of the chunk holding the first of them. */
  read(after: LogOffset | 'before-all'): Promise<ReadResult>;
  /** The last durable entry. */
  lastEntry(): Promise<LogEntry | undefined>;
  /** Drops every entry after `offset`, durable or not (recovery). Must not overlap read(). */
  truncateAfter(offset: LogOffset | 'before-all'): Promise<void>;
  /** Flushes what was appended and releases resources. Later calls are refused. */
  close(): Promise<void>;
  /** Closes without flushing and deletes the whole log. */
  destroy(): Promise<void>;
  /**
   * Takes in what another server appended to the stored log since this object last looked (a
   * storage several servers share: one writes, the others read). Only for a log this server does
   * not append to; a log whose storage can have no other writer refuses.
   */
  refresh(): Promise<void>;
}

/**
 * Whether `error` says a log is not what its reader held (removed, cut, damaged): reading it again
 * cannot help, reopening it may. Anything else (the storage out of reach) may pass by itself.
 */
export function isLogMismatch(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === 'SLUICE_STORAGE_CORRUPT' || code === 'SLUICE_STORAGE_MISSING';
}

/** How a storage backend is doing, for `/v1/status` (`storage`) and `/metrics`. */
export interface StorageHealth {
  backend: 'disk' | 'redis';
  /** `down`: the last operations failed (or the breaker is open); `up` otherwise. */
  state: 'up' | 'down';
  /** The circuit breaker in front of the backend (disk has none: always `closed`). */
  breaker: 'closed' | 'open' | 'half-open';
}

/**
 * Where shapes are kept: their logs, their metadata, and small named records of the server's own
 * (the replication continuity state). The local disk (default) or Redis (`SLUICE_STORAGE`).
 */
export interface ShapeStorage {
  readonly backend: StorageHealth['backend'];
  /** Handles of the stored shapes (metadata written, log maybe not complete). */
  listShapes(): Promise<string[]>;
  /** A shape's metadata as last written (JSON text), undefined when there is none. */
  readMetadata(handle: string): Promise<string | undefined>;
  /** Replaces a shape's metadata, durably. */
  writeMetadata(handle: string, json: string): Promise<void>;
  /** Starts the empty log of a new shape (refused if one exists). */
  createLog(handle: string): Promise<ShapeLog>;
  /** Reopens a stored shape's log after a restart or crash, repairing torn writes. */
  openLog(handle: string): Promise<ShapeLog>;
  /** Deletes everything stored for a shape (log and metadata); an open log must be closed first. */
  removeShape(handle: string): Promise<void>;
  /** A small named record of the server's (JSON text), undefined when never written. */
  readRecord(name: string): Promise<string | undefined>;
  writeRecord(name: string, json: string): Promise<void>;
  health(): StorageHealth;
  /** Calls `listener` each time `health().state` changes (the status follows it). */
  onHealthChange(listener: (health: StorageHealth) => void): void;
  /**
   * Makes this server the storage's only writer: logs of servers that wrote before are refused
   * from now on (`SLUICE_FENCED`). Called by the holder of the replication lock before it reads
   * the logs to write them.
   */
  claimWriter(): Promise<void>;
  /** How the servers sharing this storage talk; undefined when no other server can share it. */
  readonly channel: StorageChannel | undefined;
  close(): Promise<void>;
}

/**
 * Messages between the servers sharing a storage, delivered at most once to every server
 * subscribed at the time (Redis pub/sub), the sender included.
 */
export interface StorageChannel {
  /** Fails when the storage is out of reach (the message is then lost). */
  publish(message: string): Promise<void>;
  /** Calls `listener` with every message received. */
  onMessage(listener: (message: string) => void): void;
  /**
   * Calls `listener` each time the subscription is (re)established: messages sent while it was
   * not may have been missed, so what they would have said must be read from the storage.
   */
  onSubscribed(listener: () => void): void;
}
