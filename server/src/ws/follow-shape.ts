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
import { messagesFrame } from './messages-frame.js';
import { ShapeFanOut, type FanOutEnd, type FanOutSubscriber } from './shape-fan-out.js';
import type { PreparedFrame } from './prepared-frame.js';
import { sharedRead } from './shared-read.js';
import type { SubscriptionStop } from './subscription-stop.js';
import type { WsMetrics } from './ws-metrics.js';

/** Where a subscription's frames go. */
export interface SubscriptionSink {
  /**
   * Sends a frame; resolves once it is handed to the network, false when the socket can take no
   * more (closed, or closed for backpressure) or the subscription ended meanwhile.
   */
  send(type: WsFrameType, text: string): Promise<boolean>;
  /**
   * Sends a prepared `messages` frame (counted by the caller), calling `written` once it is
   * handed to the network; false when the socket took nothing.
   */
  sendPrepared(frame: PreparedFrame, written: (error?: Error) => void): boolean;
  readonly metrics: WsMetrics;
}

/**
 * Follows one shape for a WebSocket subscription (docs/protocol.md §12), until `stop` is aborted
 * (unsubscribe, socket closed, server left live), the shape goes away (a `must-refetch` frame),
 * or the server closes. The first frame comes at once, with the schema, even with nothing new
 * (it says the subscription stands); the subscription then joins its shape's fan-out
 * (`ShapeFanOut`), which sends each later batch, read as a long-poll reads it (at most one chunk
 * of durable entries after the position, `up-to-date` when it reaches the end), to every
 * subscription at the same position at once. Refusals are thrown as coded errors, exactly where
 * `GET /v1/shape` with the same parameters would refuse.
 */
export async function followShape(
  id: string,
  request: ShapeRequest,
  context: ShapeAnswerContext,
  sink: SubscriptionSink,
  stop: SubscriptionStop,
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
  const position: LogOffset = offset === 'now' ? shape.endOffset : offset;
  if (offset !== 'now') {
    const wait = await waitForEntries(shape, position, false, context.longPoll);
    if (wait === 'out-of-bounds') throw requestInvalid({ [PARAMS.offset]: ['out of bounds'] });
    if (wait === 'deleted') {
      if (!stop.aborted) await mustRefetch(id, await refetchDeleted(shape, context), sink);
      return;
    }
  }
  const next = await sendFirstFrame(id, shape, position, context, sink, stop);
  // Not awaited here: this function's state (the request with it) is not kept for as long as
  // the subscription lasts, which for thousands of idle sockets added up.
  if (next !== undefined) return followFanOut(id, shape, next, context, sink, stop);
}

/** Sends the first frame: resolves with the position after it, undefined when that ended it. */
async function sendFirstFrame(
  id: string,
  shape: Shape,
  position: LogOffset,
  context: ShapeAnswerContext,
  sink: SubscriptionSink,
  stop: SubscriptionStop,
): Promise<LogOffset | undefined> {
  try {
    const first = await firstFrame(id, shape, position, context);
    if (stop.aborted || context.longPoll.closing.aborted) return undefined;
    if (first === 'deleted') {
      await refetch(id, shape, context, sink, stop);
      return undefined;
    }
    shape.markRead();
    return (await sink.send(WS_FRAME_TYPES.messages, first.text)) ? first.last : undefined;
  } finally {
    shape.markRead();
  }
}

/** The subscription in its shape's fan-out, until it ends. */
async function followFanOut(
  id: string,
  shape: Shape,
  position: LogOffset,
  context: ShapeAnswerContext,
  sink: SubscriptionSink,
  stop: SubscriptionStop,
): Promise<void> {
  try {
    const end = await new Follower(id, position, sink, ShapeFanOut.of(shape, context), stop).ended;
    if (end === 'deleted') await refetch(id, shape, context, sink, stop);
    else if (typeof end === 'object') throw end.error;
  } finally {
    // The subscription read the shape until now: its idle time counts from here.
    shape.markRead();
  }
}

/** The subscription's first frame: what follows its position (maybe nothing) and the schema. */
async function firstFrame(
  id: string,
  shape: Shape,
  position: LogOffset,
  context: ShapeAnswerContext,
): Promise<{ text: string; last: LogOffset } | 'deleted'> {
  if (shape.deleted) return 'deleted';
  let messages = '';
  let last = position;
  let reachedEnd = true;
  if (shape.hasEntriesAfter(position)) {
    try {
      ({ messages, last, reachedEnd } = await sharedRead(shape, position));
    } catch (error) {
      // Deleted or rotated while read, or the server closing (the caller looks at that).
      if (shape.deleted) return 'deleted';
      if (context.longPoll.closing.aborted) return { text: '', last };
      throw error;
    }
  }
  if (reachedEnd) {
    const upToDate = upToDateMessage(context.replication.lastSeenLsn());
    messages = messages === '' ? upToDate : `${messages},${upToDate}`;
  }
  const schema = shape.metadata.schemaHeader;
  return { text: messagesFrame(id, shape.handle, last, schema, messages), last };
}

async function refetch(
  id: string,
  shape: Shape,
  context: ShapeAnswerContext,
  sink: SubscriptionSink,
  stop: SubscriptionStop,
): Promise<void> {
  const answer = await refetchDeleted(shape, context);
  if (!stop.aborted) await mustRefetch(id, answer, sink);
}

/**
 * A subscription in its shape's fan-out, from its first frame until it ends (`ended`): it waits
 * there while caught up, and comes back after each frame once that is handed to the network.
 */
class Follower implements FanOutSubscriber {
  readonly id: string;
  position: LogOffset;
  positionKey: string;
  readonly metrics: WsMetrics;
  /** 'stopped': the subscription or its socket ended. */
  readonly ended: Promise<FanOutEnd | 'stopped'>;
  readonly #sink: SubscriptionSink;
  readonly #fanOut: ShapeFanOut;
  readonly #stop: SubscriptionStop;
  #settle: ((end: FanOutEnd | 'stopped') => void) | undefined;

  constructor(
    id: string,
    position: LogOffset,
    sink: SubscriptionSink,
    fanOut: ShapeFanOut,
    stop: SubscriptionStop,
  ) {
    this.id = id;
    this.position = position;
    this.positionKey = formatLogOffset(position);
    this.metrics = sink.metrics;
    this.#sink = sink;
    this.#fanOut = fanOut;
    this.#stop = stop;
    this.ended = new Promise((resolve) => (this.#settle = resolve));
    if (stop.aborted) this.leave('stopped');
    else {
      stop.listen(this.#stopped);
      fanOut.add(this);
    }
  }

  deliver(frame: PreparedFrame): boolean {
    if (this.#sink.sendPrepared(frame, this.#written)) return true;
    this.leave('stopped');
    return false;
  }

  leave(end: FanOutEnd | 'stopped'): void {
    const settle = this.#settle;
    if (settle === undefined) return;
    this.#settle = undefined;
    this.#stop.unlisten(this.#stopped);
    this.#fanOut.remove(this);
    settle(end);
  }

  readonly #stopped = () => this.leave('stopped');

  /** The last frame is handed to the network: the next batch may follow. */
  readonly #written = (error?: Error) => {
    if (this.#settle === undefined) return;
    if (error || this.#stop.aborted) this.leave('stopped');
    else this.#fanOut.add(this);
  };
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
