// Raw SSE access to /v1/shape (docs/protocol.md §3.9), without the official client: one stream
// read as it arrives, each piece with the time it came, split into `data:` events and comments.

/** What arrived on one stream, in order. */
export type SseItem =
  { kind: 'data'; json: unknown; at: number } | { kind: 'comment'; text: string; at: number };

export interface SseReading {
  status: number;
  headers: Headers;
  /** Everything parsed so far. */
  items: SseItem[];
  /** The body as text when the answer is not a stream (errors). */
  text: string;
  /** Resolves when the server ended the stream (or it was closed here). */
  ended: Promise<void>;
  close(): void;
}

/**
 * Opens `live=true&live_sse=true` (the caller gives the rest) and reads it in the background.
 * Resolves once the headers are in: with `Accept: text/event-stream`, as the official client.
 */
export async function openSse(
  baseUrl: string,
  params: Record<string, string>,
  extraHeaders: Record<string, string> = {},
): Promise<SseReading> {
  const controller = new AbortController();
  const query = new URLSearchParams({ live: 'true', live_sse: 'true', ...params });
  const response = await fetch(`${baseUrl}/v1/shape?${query.toString()}`, {
    headers: { accept: 'text/event-stream', ...extraHeaders },
    signal: controller.signal,
  });
  const reading: SseReading = {
    status: response.status,
    headers: response.headers,
    items: [],
    text: '',
    ended: Promise.resolve(),
    close: () => controller.abort(),
  };
  if (!response.headers.get('content-type')?.startsWith('text/event-stream')) {
    reading.text = await response.text();
    return reading;
  }
  reading.ended = (async () => {
    const decoder = new TextDecoder();
    let pending = '';
    try {
      for await (const bytes of response.body as AsyncIterable<Uint8Array>) {
        pending += decoder.decode(bytes, { stream: true });
        let end: number;
        while ((end = pending.indexOf('\n\n')) >= 0) {
          const block = pending.slice(0, end);
          pending = pending.slice(end + 2);
          reading.items.push(parseBlock(block));
        }
      }
    } catch (error) {
      if (!controller.signal.aborted) throw error;
    }
  })();
  return reading;
}

/** One event block: this server sends either one `data:` line or one comment line. */
function parseBlock(block: string): SseItem {
  const at = Date.now();
  if (block.startsWith(':')) return { kind: 'comment', text: block.slice(1).trim(), at };
  if (!block.startsWith('data: ') || block.includes('\n')) {
    throw new Error(`unexpected SSE block: ${JSON.stringify(block)}`);
  }
  return { kind: 'data', json: JSON.parse(block.slice('data: '.length)) as unknown, at };
}

/** The `data:` messages of a reading. */
export function dataOf(reading: SseReading): { key?: string; headers: Record<string, unknown> }[] {
  return reading.items.flatMap((item) =>
    item.kind === 'data' ? [item.json as { key?: string; headers: Record<string, unknown> }] : [],
  );
}

/** Whether a message is an `up-to-date` control message. */
export function isUpToDate(message: { headers: Record<string, unknown> }): boolean {
  return message.headers.control === 'up-to-date';
}
