/**
 * The end of one WebSocket subscription (unsubscribe, socket closed, server left live), told to
 * what serves it. An AbortSignal would do, but costs an EventTarget and about 850 bytes per
 * listener: with 10,000 idle sockets that was a good part of each one's memory.
 */
export class SubscriptionStop {
  #aborted = false;
  /** At most two: the fan-out's subscriber, and a frame waiting to be written. */
  #listeners: (() => void)[] = [];

  get aborted(): boolean {
    return this.#aborted;
  }

  abort(): void {
    if (this.#aborted) return;
    this.#aborted = true;
    const listeners = this.#listeners;
    this.#listeners = [];
    for (const listener of listeners) listener();
  }

  /** `listener` is called once when the subscription ends (at once if it has). */
  listen(listener: () => void): void {
    if (this.#aborted) listener();
    else this.#listeners.push(listener);
  }

  unlisten(listener: () => void): void {
    const at = this.#listeners.indexOf(listener);
    if (at !== -1) this.#listeners.splice(at, 1);
  }
}
