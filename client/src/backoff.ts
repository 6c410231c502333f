import { FetchBackoffAbortError } from './errors.js';

/** How failed requests (5xx, 429, network errors) are retried. */
export interface BackoffOptions {
  /** Upper bound of the first wait, in ms. */
  initialDelay: number;
  /** Upper bound of any wait, in ms (a server's `retry-after` may ask for longer). */
  maxDelay: number;
  /** Growth of the upper bound per attempt. */
  multiplier: number;
  /** Attempts after the first before giving up; Infinity retries forever (offline clients). */
  maxRetries?: number;
  /** Called after every failed attempt. */
  onFailedAttempt?: () => void;
}

export const BackoffDefaults = {
  initialDelay: 1_000,
  maxDelay: 32_000,
  multiplier: 2,
  maxRetries: Infinity,
} as const satisfies BackoffOptions;

/** A `retry-after` further away than this is taken as this: a clock or a header gone wrong. */
const MAX_RETRY_AFTER_MS = 3_600_000;

/**
 * `retry-after` in ms: delta-seconds or an HTTP date (RFC 9110 §10.2.3); 0 when absent or
 * unreadable, so the client's own backoff decides.
 */
export function parseRetryAfter(header: string | null | undefined, now = Date.now()): number {
  if (!header) return 0;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1_000 : Date.parse(header) - now;
  return Number.isNaN(ms) ? 0 : Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

/**
 * The wait before retry number `attempt` (1 for the first retry): "full jitter", a uniform pick
 * below an exponentially growing cap, so that many clients failing together do not come back
 * together; never shorter than what the server asked for with `retry-after`.
 */
export function backoffDelay(
  attempt: number,
  options: Pick<BackoffOptions, 'initialDelay' | 'maxDelay' | 'multiplier'>,
  retryAfterMs = 0,
  random: () => number = Math.random,
): number {
  const cap = Math.min(
    options.maxDelay,
    options.initialDelay * options.multiplier ** (attempt - 1),
  );
  return Math.max(retryAfterMs, random() * cap);
}

/** Waits `ms`, or rejects with `FetchBackoffAbortError` as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new FetchBackoffAbortError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(new FetchBackoffAbortError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
