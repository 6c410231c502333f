import {
  HEADERS,
  PARAMS,
  WS_FRAME_TYPES,
  formatLogOffset,
  type LogOffset,
  type WsFrameType,
} from '@sluice/protocol';
import { SluiceError, requestInvalid } from '../errors/sluice-error.js';
import { liveShapeFor } from '../http/answer-shape-request.js';
import { refetchDeleted, waitForEntries } from '../http/log-answer.js';
import type { ShapeAnswer } from '../http/shape-answer.js';
import { isDegraded, type ShapeAnswerContext } from '../http/shape-answer-context.js';
import type { ShapeRequest } from '../http/shape-request.js';
import { upToDateMessage } from '../http/up-to-date-message.js';
import { Shape } from '../shapes/shape.js';
import { sharedRead } from './shared-read.js';

/** Where a subscription's frames go: `send` resolves once the frame is handed to the network. */
export interface SubscriptionSink {
  /** False when the socket can take no more (closed, or closed for backpressure). */
  send(type: WsFrameType, text: string): Promise<boolean>;
}

/**
 * How long a caught-up subscription waits before looking again on its own. Flushes, deletion,
 * shutdown (`Shape.notify`) and the subscription's end (`stop`) wake it sooner; this only bounds
 * how long anything else (a state change) could go unnoticed.
 */
const IDLE_WAIT_MS = 30_000;

/**
 * Follows one shape for a WebSocket subscription (docs/protocol.md §12), until `stop` is aborted
 * (unsubscribe, socket closed, server left live), the shape goes away (a `must-refetch` frame),
 * or the server closes. Every read is a long-poll's (at most one chunk of durable entries after
 * the position, `up-to-date` when it reaches the end), sent as one `messages` frame; the next read
 * waits until that frame has been handed to the network, so a slow client holds at most one batch
 * per subscription. Refusals are thrown as coded errors, exactly where `GET /v1/shape` with the
 * same parameters would refuse.
 */
export async function followShape(
  id: string,
  request: ShapeRequest,
  context: ShapeAnswerContext,
  sink: SubscriptionSink,
  stop: AbortSignal,
): Promise<void> {
  // Fallback answers are HTTP's: subscriptions are served only from live logs.
  if (isDegraded(context.status)) throw notLive();
  // Offsets before the snapshot's end were refused with the frame (`parseClientFrame`).
  const { offset } = request;
  if (offset === 'before-all') throw new Error('a subscription from -1');
  const resolved = await liveShapeFor(request, context);
  if (stop.aborted) return;
  if (!(resolved instanceof Shape)) {
    await mustRefetch(id, resolved, sink);
    return;
  }
  const shape = resolved;
  let position: LogOffset = offset === 'now' ? shape.endOffset : offset;
  if (offset !== 'now') {
    const wait = await waitForEntries(shape, position, false, context.longPoll);
    if (wait === 'out-of-bounds') throw requestInvalid({ [PARAMS.offset]: ['out of bounds'] });
    if (wait === 'deleted') {
      if (!stop.aborted) await mustRefetch(id, await refetchDeleted(shape, context), sink);
      return;
    }
  }
  let schema: string | undefined = shape.metadata.schemaHeader;
  try {
    for (;;) {
      if (stop.aborted || context.longPoll.closing.aborted) return;
      if (shape.deleted) {
        const answer = await refetchDeleted(shape, context);
        if (!stop.aborted) await mustRefetch(id, answer, sink);
        return;
      }
      // The first frame comes at once, even with nothing new: it says the subscription stands.
      if (schema === undefined && !shape.hasEntriesAfter(position)) {
        await shape.waitForChange(IDLE_WAIT_MS, stop);
        continue;
      }
      let messages = '';
      let last = position;
      let reachedEnd = true;
      if (shape.hasEntriesAfter(position)) {
        try {
          ({ messages, last, reachedEnd } = await sharedRead(shape, position));
        } catch (error) {
          // Deleted or rotated while read (the next turn sends the refetch), or the server closing.
          if (shape.deleted || context.longPoll.closing.aborted) continue;
          throw error;
        }
      }
      if (stop.aborted) return;
      if (reachedEnd) {
        const upToDate = upToDateMessage(context.replication.lastSeenLsn());
        messages = messages === '' ? upToDate : `${messages},${upToDate}`;
      }
      const text = messagesFrame(id, shape.handle, last, schema, messages);
      schema = undefined;
      position = last;
      shape.markRead();
      if (!(await sink.send(WS_FRAME_TYPES.messages, text))) return;
    }
  } finally {
    // The subscription read the shape until now: its idle time counts from here.
    shape.markRead();
  }
}

/** The transport refuses subscribes while replication is down (docs/protocol.md §12). */
function notLive(): SluiceError {
  return new SluiceError(
    'SLUICE_ERR_WS_NOT_LIVE',
    'The server is not live: follow the shape over HTTP and subscribe again when a status frame says live',
  );
}

async function mustRefetch(id: string, answer: ShapeAnswer, sink: SubscriptionSink) {
  const handle = answer.headers[HEADERS.handle];
  if (handle === undefined) throw new Error('a 409 without a handle');
  const frame = { type: WS_FRAME_TYPES.mustRefetch, id, handle };
  await sink.send(WS_FRAME_TYPES.mustRefetch, JSON.stringify(frame));
}

/**
 * A `messages` frame as text. The log's entries are JSON texts already (`messages`: the inside of
 * the array, joined with commas), and the schema is the `electric-schema` header's JSON: both are
 * spliced in rather than parsed and printed again.
 */
export function messagesFrame(
  id: string,
  handle: string,
  offset: LogOffset,
  schema: string | undefined,
  messages: string,
): string {
  const head = JSON.stringify({
    type: WS_FRAME_TYPES.messages,
    id,
    handle,
    offset: formatLogOffset(offset),
  }).slice(0, -1);
  const schemaPart = schema === undefined ? '' : `,"schema":${schema}`;
  return `${head}${schemaPart},"messages":[${messages}]}`;
}
