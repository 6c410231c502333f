// A fetch for the official client that records every request it sends and, for SSE answers,
// what their streams carried, so a test can tell that the client really streamed (several
// batches on one connection) rather than falling back to long-polling.
import assert from 'node:assert/strict';

export interface TappedRequest {
  url: URL;
  /** The request asked for SSE (`live_sse=true`). */
  sse: boolean;
  status?: number;
  headers?: Headers;
  /** The stream's text so far (SSE answers only). */
  body: string;
  /** Set when the stream has ended. */
  ended: boolean;
}

export interface FetchTap {
  fetchClient: typeof fetch;
  requests: TappedRequest[];
}

/** `fetchClient` passes every request to `fetch` and keeps a copy of every SSE stream. */
export function tapFetch(): FetchTap {
  const requests: TappedRequest[] = [];
  const fetchClient = async (
    input: Request | string | URL,
    init?: RequestInit,
  ): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const record: TappedRequest = {
      url,
      sse: url.searchParams.get('live_sse') === 'true',
      body: '',
      ended: false,
    };
    requests.push(record);
    const response = await fetch(input, init);
    record.status = response.status;
    record.headers = response.headers;
    const streaming = response.headers.get('content-type')?.startsWith('text/event-stream');
    if (!response.ok || !streaming || response.body === null) return response;
    const [forClient, forTap] = response.body.tee();
    void (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const bytes of forTap as unknown as AsyncIterable<Uint8Array>) {
          record.body += decoder.decode(bytes, { stream: true });
        }
      } catch {
        // The client aborted its request: the copy ends there too.
      }
      record.ended = true;
    })();
    return new Response(forClient, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
  return { fetchClient, requests };
}

/** How many `up-to-date` events a recorded stream carried. */
export function upToDatesIn(request: TappedRequest): number {
  return request.body.split('"control":"up-to-date"').length - 1;
}

/** The client streamed: no live request went out without `live_sse` (no fallback to long-polls). */
export function assertNeverLongPolled(tap: FetchTap): void {
  const longPolls = tap.requests.filter((r) => r.url.searchParams.get('live') === 'true' && !r.sse);
  assert.deepEqual(
    longPolls.map((r) => r.url.search),
    [],
    'the client fell back to long-polling',
  );
  for (const request of tap.requests.filter((r) => r.sse && r.status === 200)) {
    assert.equal(request.headers?.get('content-type'), 'text/event-stream');
  }
}
