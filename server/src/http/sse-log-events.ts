import type { LogOffset } from '@sluice/protocol';
import type { Shape } from '../shapes/shape.js';
import type { ReadResult } from '../storage/shape-storage.js';
import { isDegraded, type ShapeAnswerContext } from './shape-answer-context.js';
import { SSE_KEEP_ALIVE, sseEvent } from './sse-stream.js';
import { upToDateMessage } from './up-to-date-message.js';

/**
 * The events of an SSE stream on a shape's log, from `from` on (docs/protocol.md §3.9): each read
 * of the log (at most one chunk, as a long-poll's) as one `data:` event per message followed by
 * an `up-to-date` event, at once if the client is behind and then whenever new entries are
 * durable; a keep-alive comment after `keepAliveMs` without anything else. It ends after the SSE
 * timeout, when the shape goes away (the next request gets the 409), when the server closes, when
 * the server's mode (live or fallback, `degraded`) is no longer the one the headers announced,
 * and when the client goes away (`stop`).
 */
export async function* sseLogEvents(
  shape: Shape,
  from: LogOffset,
  degraded: boolean,
  context: ShapeAnswerContext,
  stop: AbortSignal,
): AsyncGenerator<string> {
  const { sse, longPoll, status } = context;
  const endAt = Date.now() + sse.timeoutMs;
  // A waiter on the shape is woken by flushes, deletion and shutdown (ShapeRegistry.wakeAll),
  // not by this stream's client going away: that wakes it here.
  const stopped = new Promise<void>((resolve) => stop.addEventListener('abort', () => resolve()));
  let position = from;
  let quietSince = Date.now();
  try {
    for (;;) {
      if (stop.aborted || longPoll.closing.aborted || shape.deleted) return;
      if (isDegraded(status) !== degraded) return;
      if (shape.hasEntriesAfter(position)) {
        let read: ReadResult;
        try {
          read = await shape.log.read(position);
        } catch (error) {
          // Deleted or rotated meanwhile, or the server closing its logs: the stream just ends.
          if (shape.deleted || longPoll.closing.aborted) return;
          throw error;
        }
        const last = read.lastOffset;
        if (last === undefined) return;
        yield batchEvents(read.entries, last);
        position = last;
        quietSince = Date.now();
        continue;
      }
      const now = Date.now();
      if (now >= endAt) return;
      const keepAliveAt = quietSince + sse.keepAliveMs;
      if (now >= keepAliveAt) {
        yield SSE_KEEP_ALIVE;
        quietSince = Date.now();
        continue;
      }
      await Promise.race([shape.waitForChange(Math.min(endAt, keepAliveAt) - now), stopped]);
    }
  } finally {
    // The stream read the shape until now: its idle time counts from here.
    shape.markRead();
  }
}

/**
 * One read as events, ending with `up-to-date`. Its `global_last_seen_lsn` is the commit LSN of
 * the read's last transaction: the official client resumes from `<that LSN>_0` (it has no other
 * offset in SSE mode), which must lie within the log, never past its end. The reads of an SSE
 * stream start at `0_inf` or later, so every entry is a change with an LSN. Stored messages are
 * JSON text on one line, as `data:` needs.
 */
function batchEvents(entries: readonly string[], last: LogOffset): string {
  let text = '';
  for (const entry of entries) text += sseEvent(entry);
  return text + sseEvent(upToDateMessage(last.tx));
}
