import {
  EVENT_STREAM_TYPE,
  HEADERS,
  PARAMS,
  formatLogOffset,
  type LogOffset,
} from '@sluice/protocol';
import { requestInvalid } from '../errors/sluice-error.js';
import { Shape } from '../shapes/shape.js';
import { liveShapeFor } from './answer-shape-request.js';
import { cacheControl } from './cache-policy.js';
import { degradedAnswer } from './degraded-answer.js';
import {
  decideDegraded,
  notReadyWhileDegraded,
  refetchFallbackAnswer,
} from './degraded-decision.js';
import { nextLiveCursor } from './live-cursor.js';
import { refetchDeleted, waitForEntries } from './log-answer.js';
import type { ShapeAnswer } from './shape-answer.js';
import { isDegraded, type ShapeAnswerContext } from './shape-answer-context.js';
import type { ShapeRequest } from './shape-request.js';
import { sseLogEvents } from './sse-log-events.js';
import type { SseStream } from './sse-stream.js';

/**
 * The answer to a live request with `live_sse` (docs/protocol.md §3.9): an SSE stream, or what a
 * long-poll would get instead of data (409, 400, 503), which are ordinary answers the client
 * reads as errors. Everything a stream's headers say is decided before it opens, and a stream
 * never carries a JSON body: the official client would take the headers' offset and skip it.
 */
export async function answerSseRequest(
  parsed: ShapeRequest,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer | SseStream> {
  const { offset } = parsed;
  // Parsing allows live (and so SSE) only at a position in the log.
  if (offset === 'before-all' || offset === 'now') throw new Error('SSE needs a log position');
  if (offset.tx === 0n && offset.op !== Infinity) {
    // A position inside the initial snapshot has no LSN for the client to resume from (it
    // takes its offset from each `up-to-date`'s LSN); the official client never asks this.
    throw requestInvalid({
      [PARAMS.offset]: [
        `must be at or after the end of the initial snapshot (0_inf) with ${PARAMS.liveSse}`,
      ],
    });
  }
  if (isDegraded(context.status)) return degradedSse(parsed, offset, context);
  const shape = await liveShapeFor(parsed, context);
  if (!(shape instanceof Shape)) return shape;
  return logStream(shape, parsed, offset, false, context);
}

/**
 * While replication is down, as long-polls are answered then (docs/protocol.md §7.3): a shape
 * known to continue the slot is streamed from its log, read-only; a fallback handle is held as a
 * long-poll; any other handle is sent to a new fallback handle.
 */
async function degradedSse(
  parsed: ShapeRequest,
  offset: LogOffset,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer | SseStream> {
  const { choice, held } = await decideDegraded(parsed, context);
  switch (choice) {
    case 'serve-log':
      // The choice is made only for a shape the registry holds.
      return logStream(held!, parsed, offset, true, context);
    case 'fallback-handle': {
      // A fallback handle has no log: held as its long-poll is (until live again, until its
      // rows may have changed, or for the long-poll timeout), then answered as it would be: a
      // 409 as it is, "nothing new" as a stream that ends with nothing in it.
      const answer = await degradedAnswer(parsed, context);
      if (answer.status === 409) return answer;
      return {
        headers: streamHeaders(parsed.handle!, parsed, offset, true, context),
        events: () => [],
      };
    }
    case 'refetch-fallback':
      return refetchFallbackAnswer(parsed, context);
    case 'not-ready':
      throw notReadyWhileDegraded();
    case 'fallback-rows':
    case 'nothing-new':
      // Only for offset=-1 and offset=now, which are never live.
      throw new Error(`no SSE answer for ${choice}`);
  }
}

/** A stream on the shape's log, once the offset is known to lie within it. */
async function logStream(
  shape: Shape,
  parsed: ShapeRequest,
  offset: LogOffset,
  degraded: boolean,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer | SseStream> {
  shape.markRead();
  const wait = await waitForEntries(shape, offset, false, context.longPoll);
  if (wait === 'out-of-bounds') throw requestInvalid({ [PARAMS.offset]: ['out of bounds'] });
  if (wait === 'deleted') return refetchDeleted(shape, context);
  const headers = streamHeaders(shape.handle, parsed, offset, degraded, context);
  // Every stream says something else: a unique tag, as for a long-poll that timed out, so that
  // no cache revalidates one stream into another.
  const unique = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const text = formatLogOffset(offset);
  headers[HEADERS.etag] =
    `"${shape.handle}:${text}:${text}:${unique}${degraded ? ':fallback' : ''}"`;
  return { headers, events: (stop) => sseLogEvents(shape, offset, degraded, context, stop) };
}

/**
 * The headers of a long-poll's answer, but for a stream: `electric-offset` is the request's own
 * offset (the client adopts it when the stream opens, before any event; it moves on with each
 * `up-to-date`), and nothing says up-to-date yet.
 */
function streamHeaders(
  handle: string,
  parsed: ShapeRequest,
  offset: LogOffset,
  degraded: boolean,
  context: ShapeAnswerContext,
): Record<string, string> {
  const headers: Record<string, string> = {
    [HEADERS.handle]: handle,
    [HEADERS.offset]: formatLogOffset(offset),
    // Strictly greater than the request's cursor: two cached streams can never send a client
    // back and forth between their URLs.
    [HEADERS.cursor]: nextLiveCursor(context.longPoll.timeoutMs, parsed.cursor),
    [HEADERS.contentType]: EVENT_STREAM_TYPE,
    // nginx (and proxies that read it) pass each event on at once instead of buffering.
    [HEADERS.accelBuffering]: 'no',
  };
  if (degraded) {
    headers[HEADERS.fallbackMode] = 'true';
    headers[HEADERS.cacheControl] = cacheControl('fallback', context.cache);
  } else {
    // As Electric: a CDN may keep a stream's answer for as long as the stream lasts.
    const maxAgeS = Math.max(0, Math.floor(context.sse.timeoutMs / 1000) - 1);
    headers[HEADERS.cacheControl] = `public, max-age=${maxAgeS}`;
  }
  return headers;
}
