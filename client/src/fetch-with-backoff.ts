import { HEADERS } from '@sluice/protocol';
import { backoffDelay, parseRetryAfter, sleep, type BackoffOptions } from './backoff.js';
import {
  FetchBackoffAbortError,
  FetchError,
  MalformedResponseError,
  MissingHeadersError,
} from './errors.js';

/** Worth retrying: the server or the network may be fine again shortly. */
function isRetryable(error: unknown): boolean {
  // What the answer said is wrong stays wrong when asked again (a proxy's CORS settings, …).
  if (error instanceof MissingHeadersError || error instanceof MalformedResponseError) return false;
  // Otherwise fetch, or reading the body, rejects only for network failures (a cut connection).
  if (!(error instanceof FetchError)) return true;
  return error.status === 429 || error.status < 400 || error.status >= 500;
}

/**
 * GETs `url` and reads its answer with `read` until both succeed, retrying 5xx, 429 and network
 * errors (a connection cut while the body arrives included: the answer is asked for again, as
 * nothing of it was used) with jittered exponential backoff that honours `retry-after`. Other
 * statuses (4xx, including the 409 of must-refetch) are thrown at once as `FetchError` for the
 * caller to handle, as are `read`'s protocol errors; so is the last error once `maxRetries`
 * retries have failed. An aborted `signal` ends it with `FetchBackoffAbortError`.
 */
export async function fetchWithBackoff<T>(
  fetchClient: typeof fetch,
  url: URL,
  init: { headers: Record<string, string>; signal: AbortSignal },
  options: BackoffOptions,
  read: (response: Response) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let error: unknown;
    try {
      const response = await fetchClient(url.toString(), init);
      if (response.ok) return await read(response);
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
