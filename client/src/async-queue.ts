import { FetchBackoffAbortError } from './errors.js';

/**
 * Items pushed from callbacks (a socket's frames), taken one at a time by an async loop, in
 * order: the loop finishes each before it looks at the next.
 */
export class AsyncQueue<T> {
  readonly #items: T[] = [];
  #waiter: (() => void) | undefined;

  /** Items pushed and not yet taken. */
  get size(): number {
    return this.#items.length;
  }

  /** Drops every item not yet taken. */
  clear(): void {
    this.#items.length = 0;
  }

  push(item: T): void {
    this.#items.push(item);
    this.#waiter?.();
  }

  /** The next item, once there is one; rejects with `FetchBackoffAbortError` when `signal` aborts. */
  async next(signal: AbortSignal): Promise<T> {
    for (;;) {
      if (signal.aborted) throw new FetchBackoffAbortError();
      const item = this.#items.shift();
      if (item !== undefined) return item;
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiter = undefined;
          signal.removeEventListener('abort', wake);
          resolve();
        };
        this.#waiter = wake;
        signal.addEventListener('abort', wake, { once: true });
      });
    }
  }
}
