import { HEADERS } from '@sluice/protocol';
import { backoffDelay, parseRetryAfter, sleep, type BackoffOptions } from './backoff.js';
import { FetchBackoffAbortError, FetchError } from './errors.js';

/** Worth retrying: the server or the network may be fine again shortly. */
function isRetryable(error: unknown): boolean {
  if (!(error instanceof FetchError)) return true; // fetch rejects only for network failures
  return error.status === 429 || error.status < 400 || error.status >= 500;
}

/**
 * GETs `url` until it answers 2xx, retrying 5xx, 429 and network errors with jittered
 * exponential backoff that honours `retry-after`. Other statuses (4xx, including the 409 of
 * must-refetch) are thrown at once as `FetchError` for the caller to handle; so is the last
 * error once `maxRetries` retries have failed. An aborted `signal` ends it with
 * `FetchBackoffAbortError`.
 */
export async function fetchWithBackoff(
  fetchClient: typeof fetch,
  url: URL,
  init: { headers: Record<string, string>; signal: AbortSignal },
  options: BackoffOptions,
): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    let error: unknown;
    try {
      const response = await fetchClient(url.toString(), init);
      if (response.ok) return response;
      error = await FetchError.fromResponse(response, url.toString());
    } catch (thrown) {
      error = thrown;
    }
    if (init.signal.aborted) throw new FetchBackoffAbortError();
    options.onFailedAttempt?.();
    if (!isRetryable(error) || attempt > (options.maxRetries ?? Infinity)) throw error;
    const retryAfter =
      error instanceof FetchError ? parseRetryAfter(error.headers[HEADERS.retryAfter]) : 0;
    await sleep(backoffDelay(attempt, options, retryAfter), init.signal);
  }
}
