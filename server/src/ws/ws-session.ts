import {
  WS_CLOSE_CODES,
  WS_FRAME_TYPES,
  type StatusDocument,
  type WsFrameType,
  type WsStatusFrame,
} from '@sluice/protocol';
import type { FastifyBaseLogger } from 'fastify';
import { WebSocket, type RawData } from 'ws';
import { SluiceError } from '../errors/sluice-error.js';
import type { ShapeAnswerContext } from '../http/shape-answer-context.js';
import { parseClientFrame } from './client-frame.js';
import { errorFrame } from './error-frame.js';
import { followShape, type SubscriptionSink } from './follow-shape.js';
import { sendPreparedFrame, type PreparedFrame } from './prepared-frame.js';
import { SubscriptionStop } from './subscription-stop.js';
import type { WsCloseReason, WsMetrics } from './ws-metrics.js';

/** What every socket of the transport shares. */
export interface WsSessionOptions {
  context: ShapeAnswerContext;
  maxSubscriptions: number;
  /** Unsent bytes past which the socket is closed with 4000 (backpressure). */
  maxBufferedBytes: number;
  metrics: WsMetrics;
  log: FastifyBaseLogger;
  /** Database trouble seen by a subscription: have the database probed at once. */
  onUnreachable: () => void;
  /** The socket has closed (its subscriptions are ended already). */
  onClosed: (session: WsSession) => void;
}

/** ws's error code for a frame over `maxPayload` (it closes the socket with 1009 itself). */
const TOO_BIG = 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';

/**
 * One client's socket (docs/protocol.md §12): its subscriptions by client-chosen id, each a
 * `followShape` run with its own abort signal; the frames it sends, with the backpressure rule;
 * whether it answered the last ping. Nothing a client sends ends the socket but a frame over the
 * size limit (ws closes it with 1009) or a broken WebSocket protocol: bad frames get error frames.
 */
export class WsSession {
  readonly #socket: WebSocket;
  readonly #options: WsSessionOptions;
  readonly #subscriptions = new Map<string, SubscriptionStop>();
  #answeredPing = true;
  #reason: WsCloseReason | undefined;
  #counted = false;

  constructor(socket: WebSocket, options: WsSessionOptions, status: StatusDocument) {
    this.#socket = socket;
    this.#options = options;
    socket.on('message', (data, isBinary) => this.#receive(data, isBinary));
    socket.on('pong', () => {
      this.#answeredPing = true;
    });
    // ws closes the socket itself after these (1009 for size, 1002/1007 for the rest).
    socket.on('error', (error: Error & { code?: string }) => {
      this.#reason ??= error.code === TOO_BIG ? 'frame-too-big' : 'protocol';
    });
    socket.once('close', () => {
      this.#count(this.#reason ?? 'client');
      this.endSubscriptions();
      options.onClosed(this);
    });
    this.sendStatus(status);
  }

  /** Ends every subscription (the socket closed, or the server left live). */
  endSubscriptions(): void {
    for (const stop of this.#subscriptions.values()) stop.abort();
    this.#options.metrics.subscriptions.dec(this.#subscriptions.size);
    this.#subscriptions.clear();
  }

  sendStatus(status: StatusDocument): void {
    const frame: WsStatusFrame = { type: WS_FRAME_TYPES.status, status };
    this.#send(WS_FRAME_TYPES.status, JSON.stringify(frame));
  }

  /**
   * One heartbeat tick: a socket that has not answered the previous ping is cut (no close
   * handshake with a peer that does not answer); the others are pinged again.
   */
  heartbeat(): void {
    if (this.#socket.readyState !== WebSocket.OPEN) return;
    if (!this.#answeredPing) {
      this.#reason ??= 'heartbeat';
      this.#count('heartbeat');
      this.#socket.terminate();
      return;
    }
    this.#answeredPing = false;
    this.#socket.ping();
  }

  /**
   * Closes the socket with `code`. Counted under `reason` at once: a client that reads too
   * slowly may take long to answer the close (ws cuts it after its closing timeout).
   */
  close(code: number, text: string, reason: WsCloseReason): void {
    this.#reason ??= reason;
    this.#count(reason);
    this.endSubscriptions();
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.close(code, text);
  }

  /** Cuts the socket at once (it did not finish closing in time). */
  terminate(): void {
    this.#socket.terminate();
  }

  /**
   * Sends a frame unless the socket is closing, calling `written` once it is handed to the
   * network. Backpressure: when the bytes not yet handed to the network already pass the limit,
   * the client reads too slowly and the socket is closed with 4000 instead of buffering more; it
   * reconnects and resumes from its last offsets. Memory per socket is thus bounded by the limit
   * plus one frame (one batch is at most one chunk).
   */
  #send(type: WsFrameType, text: string, written?: (error?: Error) => void): boolean {
    const socket = this.#socket;
    if (socket.readyState !== WebSocket.OPEN) return false;
    if (socket.bufferedAmount > this.#options.maxBufferedBytes) {
      this.close(WS_CLOSE_CODES.sendBufferFull, 'send buffer full', 'backpressure');
      return false;
    }
    socket.send(text, written);
    this.#options.metrics.sent(type, Buffer.byteLength(text));
    return true;
  }

  /** Sends a `messages` frame already framed (the fan-out counts it), under `#send`'s rules. */
  #sendPrepared(frame: PreparedFrame, written: (error?: Error) => void): boolean {
    const socket = this.#socket;
    if (socket.readyState !== WebSocket.OPEN) return false;
    if (socket.bufferedAmount > this.#options.maxBufferedBytes) {
      this.close(WS_CLOSE_CODES.sendBufferFull, 'send buffer full', 'backpressure');
      return false;
    }
    sendPreparedFrame(socket, frame, written);
    return true;
  }

  /** Counts the socket's end once, under the first reason found for it. */
  #count(reason: WsCloseReason): void {
    if (this.#counted) return;
    this.#counted = true;
    this.#options.metrics.socketsClosed.inc({ reason });
  }

  #sendError(error: unknown, id: string | undefined): void {
    const { log, onUnreachable } = this.#options;
    const frame = errorFrame(error, id, log, onUnreachable);
    this.#send(WS_FRAME_TYPES.error, JSON.stringify(frame));
  }

  #receive(data: RawData, isBinary: boolean): void {
    if (isBinary) {
      const error = new SluiceError('SLUICE_ERR_WS_FRAME_INVALID', 'frame: must be a text frame', {
        fields: { frame: ['must be a text frame (JSON)'] },
      });
      this.#sendError(error, undefined);
      return;
    }
    const frame = parseClientFrame(rawText(data));
    if (frame.type === 'invalid') {
      // An error naming an id means no subscription with that id exists any more.
      if (frame.id !== undefined) this.#end(frame.id);
      this.#sendError(frame.error, frame.id);
    } else if (frame.type === WS_FRAME_TYPES.unsubscribe) {
      this.#end(frame.id);
    } else {
      this.#subscribe(frame.id, frame.request);
    }
  }

  #subscribe(id: string, request: Parameters<typeof followShape>[1]): void {
    if (this.#subscriptions.has(id)) {
      this.#end(id);
      const message = 'id: is already subscribed (that subscription has ended)';
      const error = new SluiceError('SLUICE_ERR_WS_FRAME_INVALID', message, {
        fields: { id: ['is already subscribed: that subscription has ended'] },
      });
      this.#sendError(error, id);
      return;
    }
    const { maxSubscriptions, context, metrics } = this.#options;
    if (this.#subscriptions.size >= maxSubscriptions) {
      const message = `This socket holds ${maxSubscriptions} subscriptions, the most it may (SLUICE_WS_MAX_SUBSCRIPTIONS)`;
      this.#sendError(new SluiceError('SLUICE_ERR_WS_TOO_MANY_SUBSCRIPTIONS', message), id);
      return;
    }
    const stop = new SubscriptionStop();
    this.#subscriptions.set(id, stop);
    metrics.subscriptions.inc();
    const sink: SubscriptionSink = {
      send: (type, text) =>
        new Promise<boolean>((resolve) => {
          // Resolved when written, or false at once when the subscription ends meanwhile.
          const ended = () => resolve(false);
          const written = (error?: Error) => {
            stop.unlisten(ended);
            resolve(!error);
          };
          if (this.#send(type, text, written)) stop.listen(ended);
          else resolve(false);
        }),
      sendPrepared: (frame, written) => this.#sendPrepared(frame, written),
      metrics,
    };
    followShape(id, request, context, sink, stop)
      .catch((error: unknown) => {
        if (!stop.aborted) this.#sendError(error, id);
      })
      .finally(() => {
        // Ended on its own (must-refetch, an error, the server closing): the id is free again.
        if (this.#subscriptions.get(id) === stop) this.#end(id);
      });
  }

  #end(id: string): void {
    const stop = this.#subscriptions.get(id);
    if (!stop) return;
    stop.abort();
    this.#subscriptions.delete(id);
    this.#options.metrics.subscriptions.dec();
  }
}

/** ws hands text frames over as one Buffer (its default `binaryType`). */
function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}
