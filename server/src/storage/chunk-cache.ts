import { LRUCache } from 'lru-cache';
import type { ParsedChunk } from './chunk-file.js';

/**
 * Sealed chunks kept parsed in memory for catch-up readers, shared by every shape log and
 * bounded in bytes (lru-cache): however many shapes exist, the cache costs at most its size,
 * the least recently read chunks going first. A chunk is counted at its size on disk.
 */
export class ChunkCache {
  readonly #chunks: LRUCache<string, Promise<ParsedChunk>> | undefined;

  /** `maxBytes` 0 keeps nothing: every read goes to disk. */
  constructor(readonly maxBytes: number) {
    // lru-cache refuses a zero size.
    if (maxBytes > 0) this.#chunks = new LRUCache({ maxSize: maxBytes });
  }

  /** Bytes held now, never above `maxBytes`. */
  get bytes(): number {
    return this.#chunks?.calculatedSize ?? 0;
  }

  get(dir: string, number: number): Promise<ParsedChunk> | undefined {
    return this.#chunks?.get(keyOf(dir, number));
  }

  /** A chunk larger than the whole cache is not kept. */
  set(dir: string, number: number, chunk: Promise<ParsedChunk>, bytes: number): void {
    this.#chunks?.set(keyOf(dir, number), chunk, { size: Math.max(1, bytes) });
  }

  /** Forgets one chunk, if it is still the one given (a failed read). */
  forget(dir: string, number: number, chunk?: Promise<ParsedChunk>): void {
    const key = keyOf(dir, number);
    if (chunk === undefined || this.#chunks?.peek(key) === chunk) this.#chunks?.delete(key);
  }

  /** Forgets every chunk of one log (closed, deleted or cut). */
  forgetLog(dir: string): void {
    if (!this.#chunks) return;
    const prefix = keyOf(dir, '');
    for (const key of [...this.#chunks.keys()])
      if (key.startsWith(prefix)) this.#chunks.delete(key);
  }
}

function keyOf(dir: string, number: number | ''): string {
  return `${dir}\0${number}`;
}
