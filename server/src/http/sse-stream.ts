import type { ShapeAnswer } from './shape-answer.js';

/**
 * An SSE live answer (docs/protocol.md §3.9) as a value: its headers, sent at once, and its
 * events, made while the stream lasts. `events` ends when the stream should close; `stop` is
 * aborted when the client goes away, so that nothing waits on its behalf.
 */
export interface SseStream {
  headers: Record<string, string>;
  events(stop: AbortSignal): AsyncIterable<string> | Iterable<string>;
}

export function isSseStream(answer: ShapeAnswer | SseStream): answer is SseStream {
  return 'events' in answer;
}

/** One message of the log as an SSE event: the client parses each `data:` as one message. */
export function sseEvent(json: string): string {
  return `data: ${json}\n\n`;
}

/** An SSE comment: clients ignore it, proxies and idle timers see the stream is alive. */
export const SSE_KEEP_ALIVE = ': keep-alive\n\n';
