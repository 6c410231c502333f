import { HEADERS, type ServerState, type StatusDocument } from '@sluice/protocol';
import { parseRetryAfter } from './backoff.js';

/** One stream's interest in a server's `/v1/status`. */
export interface StatusWatch {
  readonly intervalMs: number;
  readonly onStatus: (status: ServerState) => void;
}

/**
 * Polls one status URL for every stream watching it, at the shortest interval any of them asks
 * for; stops when the last one leaves.
 */
class StatusPoller {
  readonly #url: string;
  readonly #fetchClient: typeof fetch;
  readonly #watches = new Set<StatusWatch>();
  readonly #forget: () => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #inFlight: AbortController | undefined;

  constructor(url: string, fetchClient: typeof fetch, forget: () => void) {
    this.#url = url;
    this.#fetchClient = fetchClient;
    this.#forget = forget;
  }

  add(watch: StatusWatch): void {
    this.#watches.add(watch);
    // The first watcher was just told the server is in fallback: no need to ask again at once.
    if (this.#timer === undefined && this.#inFlight === undefined) this.#schedule(0);
  }

  remove(watch: StatusWatch): void {
    this.#watches.delete(watch);
    if (this.#watches.size > 0) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#inFlight?.abort();
    this.#forget();
  }

  #schedule(atLeastMs: number): void {
    const interval = Math.min(...[...this.#watches].map((watch) => watch.intervalMs));
    this.#timer = setTimeout(() => void this.#poll(), Math.max(interval, atLeastMs));
  }

  async #poll(): Promise<void> {
    this.#timer = undefined;
    const controller = new AbortController();
    this.#inFlight = controller;
    let retryAfterMs = 0;
    try {
      const response = await this.#fetchClient(this.#url, { signal: controller.signal });
      retryAfterMs = parseRetryAfter(response.headers.get(HEADERS.retryAfter));
      if (!response.ok) await response.body?.cancel();
      const body: unknown = response.ok ? await response.json() : undefined;
      // Only `status` is read; a string is passed on as it is (only `live` takes a stream back).
      const status: unknown = (body as Partial<StatusDocument> | undefined)?.status;
      if (typeof status === 'string' && !controller.signal.aborted) {
        for (const watch of [...this.#watches]) watch.onStatus(status as ServerState);
      }
    } catch {
      // Unreachable or not JSON: ask again at the next interval, like any other answer.
    } finally {
      this.#inFlight = undefined;
    }
    if (!controller.signal.aborted && this.#watches.size > 0) this.#schedule(retryAfterMs);
  }
}

/** Every poller of the page (or process), by fetch client and URL. */
const pollers = new Map<typeof fetch, Map<string, StatusPoller>>();

/**
 * Watches `statusUrl` until the returned function is called. Streams watching the same URL with
 * the same fetch client share one poller, so a page with many shapes on one server sends one
 * status request per interval, not one per shape.
 */
export function watchServerStatus(
  statusUrl: string,
  fetchClient: typeof fetch,
  watch: StatusWatch,
): () => void {
  let byUrl = pollers.get(fetchClient);
  if (!byUrl) {
    byUrl = new Map<string, StatusPoller>();
    pollers.set(fetchClient, byUrl);
  }
  let poller = byUrl.get(statusUrl);
  if (!poller) {
    const urls = byUrl;
    poller = new StatusPoller(statusUrl, fetchClient, () => {
      urls.delete(statusUrl);
      if (urls.size === 0) pollers.delete(fetchClient);
    });
    byUrl.set(statusUrl, poller);
  }
  const shared = poller;
  shared.add(watch);
  let watching = true;
  return () => {
    if (!watching) return;
    watching = false;
    shared.remove(watch);
  };
}
