/** One reading of the database's current snapshot (`pg_current_snapshot()` as text). */
export interface SnapshotReading {
  snapshot: string;
  /** `performance.now()` when the query that read it started. */
  startedAt: number;
}

interface Waiter {
  since: number;
  resolve: (reading: SnapshotReading | undefined) => void;
}

/**
 * Reads the database's current snapshot on a timer, once for every request waiting on it, and
 * only while one waits: however many requests are held, the database answers one cheap query per
 * interval. Two readings are equal exactly when no transaction ended between them (the snapshot
 * lists the transactions in progress below the next transaction id), which is how a held fallback
 * request learns that its rows may have changed without asking for them again.
 */
export class SnapshotWatch {
  readonly #read: () => Promise<string>;
  readonly #intervalMs: number;
  readonly #waiters = new Set<Waiter>();
  #latest: SnapshotReading | undefined;
  #running = false;

  constructor(read: () => Promise<string>, intervalMs: number) {
    this.#read = read;
    this.#intervalMs = intervalMs;
  }

  /** The last successful reading, if any. */
  latest(): SnapshotReading | undefined {
    return this.#latest;
  }

  /**
   * The first reading taken by a query that started after this call; `undefined` once `until`
   * is aborted. A failed reading is skipped (the next one is tried an interval later).
   */
  next(until: AbortSignal): Promise<SnapshotReading | undefined> {
    if (until.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        since: performance.now(),
        resolve: (reading) => {
          this.#waiters.delete(waiter);
          until.removeEventListener('abort', onAbort);
          resolve(reading);
        },
      };
      const onAbort = () => waiter.resolve(undefined);
      until.addEventListener('abort', onAbort);
      this.#waiters.add(waiter);
      if (!this.#running) void this.#loop();
    });
  }

  async #loop(): Promise<void> {
    this.#running = true;
    try {
      while (this.#waiters.size > 0) {
        const startedAt = performance.now();
        const snapshot = await this.#read().catch(() => undefined);
        if (snapshot !== undefined) {
          const reading = { snapshot, startedAt };
          this.#latest = reading;
          for (const waiter of [...this.#waiters]) {
            if (waiter.since <= startedAt) waiter.resolve(reading);
          }
        }
        if (this.#waiters.size === 0) break;
        await new Promise((resolve) => setTimeout(resolve, this.#intervalMs).unref());
      }
    } finally {
      this.#running = false;
    }
  }
}
