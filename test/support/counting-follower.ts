import {
  isChangeMessage,
  isControlMessage,
  ShapeStream,
  type Message,
  type Row,
} from '@electric-sql/client';
import { unrefClientSaveTimers } from './shape-oracle.js';

unrefClientSaveTimers();

/**
 * Follows a shape with the official client and keeps every message it delivers, so a test can
 * check exactly-once delivery (no change lost or duplicated) and count refetches, besides the
 * materialised rows.
 */
export class CountingFollower {
  readonly stream: ShapeStream<Row>;
  /** Rows by key, materialised the way the official Shape does. */
  readonly rows = new Map<string, Row>();
  /** How many times each key was inserted (a duplicate delivery shows up as 2). */
  readonly inserts = new Map<string, number>();
  mustRefetches = 0;
  upToDates = 0;
  errors: unknown[] = [];
  readonly #abort = new AbortController();

  constructor(
    url: string,
    params: {
      table: string;
      columns?: string[];
      replica?: 'default' | 'full';
      where?: string;
      params?: string[];
    },
  ) {
    this.stream = new ShapeStream<Row>({
      url,
      params,
      // unsubscribeAll() leaves the fetch loop running; only the signal stops it.
      signal: this.#abort.signal,
      // Restarts take a second or two: retry quickly so tests converge promptly.
      backoffOptions: { initialDelay: 100, maxDelay: 1_000, multiplier: 1.5 },
    });
    this.stream.subscribe(
      (messages) => this.#apply(messages),
      (error) => this.errors.push(error),
    );
  }

  #apply(messages: Message<Row>[]): void {
    for (const message of messages) {
      if (isChangeMessage(message)) {
        const { key, value, headers } = message;
        if (headers.operation === 'insert') {
          this.rows.set(key, value);
          this.inserts.set(key, (this.inserts.get(key) ?? 0) + 1);
        } else if (headers.operation === 'update') {
          this.rows.set(key, { ...this.rows.get(key), ...value });
        } else {
          this.rows.delete(key);
        }
      } else if (isControlMessage(message)) {
        if (message.headers.control === 'must-refetch') {
          this.mustRefetches++;
          this.rows.clear();
          this.inserts.clear();
        } else if (message.headers.control === 'up-to-date') {
          this.upToDates++;
        }
      }
    }
  }

  /** Keys delivered as inserts more than once since the last refetch. */
  duplicates(): string[] {
    return [...this.inserts].filter(([, count]) => count > 1).map(([key]) => key);
  }

  /** Resolves once `done(rows)` holds, or rejects after `timeoutMs` with what was seen. */
  async waitFor(done: (rows: Map<string, Row>) => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.rows)) {
      if (Date.now() > deadline) {
        throw new Error(
          `follower did not converge: ${this.rows.size} rows, errors: ${this.errors.map(String).join('; ')}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  close(): void {
    this.stream.unsubscribeAll();
    this.#abort.abort();
  }
}
