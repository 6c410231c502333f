/**
 * The frames of the WebSocket live transport, `GET /v1/ws` (docs/protocol.md §12). Every frame is
 * one JSON text frame: an object whose `type` is one of `WS_FRAME_TYPES`. Snapshots stay HTTP: a
 * subscription continues a shape from a (handle, offset) the client got from `GET /v1/shape`.
 *
 * Change log (tell the other helpers here when something changes; additions only):
 * - first version.
 * - `WS_CLOSE_CODES.unsupportedData` (1003) removed before anyone used it: a binary frame gets an
 *   `error` frame (`SLUICE_ERR_WS_FRAME_INVALID`) and the socket stays open.
 * - `WS_CLOSE_CODES.internalError` (1011) removed, unused: a server fault in one subscription is
 *   an `error` frame for it (500 `SLUICE_ERR_INTERNAL`), never the end of the socket.
 * - the server is in (server/src/ws), the grammar is in docs/protocol.md §12. Error codes of
 *   frames: SLUICE_ERR_WS_FRAME_INVALID (400), SLUICE_ERR_WS_TOO_MANY_SUBSCRIPTIONS (400),
 *   SLUICE_ERR_WS_NOT_LIVE (503, a subscribe while in fallback/unavailable).
 */
import type { ErrorCode } from './error-codes.js';
import type { WireMessage } from './messages.js';
import type { StatusDocument } from './status-document.js';

export const WS_FRAME_TYPES = {
  /** client → server: follow one shape from a (handle, offset). */
  subscribe: 'subscribe',
  /** client → server: stop following it. */
  unsubscribe: 'unsubscribe',
  /** server → client: a batch of a subscription's log, as an HTTP live answer's body. */
  messages: 'messages',
  /** server → client: the subscription's handle is gone; the HTTP answer would be a 409. */
  mustRefetch: 'must-refetch',
  /** server → client: a frame or a subscription was refused, or a subscription failed. */
  error: 'error',
  /** server → client: the `GET /v1/status` document, at open and on every change of state. */
  status: 'status',
} as const;

export type WsFrameType = (typeof WS_FRAME_TYPES)[keyof typeof WS_FRAME_TYPES];

/**
 * A shape's definition as the parameters of `GET /v1/shape` (docs/protocol.md §2), with the same
 * text values: `columns` comma-separated as in the query string. `params` are the values of
 * `$1…$n`: an object `{"1": "a", "2": "b"}` (the query's `params[1]=a&params[2]=b`) or an array
 * (`["a", "b"]`, `$1` first).
 */
export interface WsShapeParams {
  table: string;
  where?: string;
  params?: Record<string, string> | string[];
  columns?: string;
  replica?: 'default' | 'full';
  log?: 'full' | 'changes_only';
}

/**
 * Follow a shape from `offset` (exclusive, as in `GET /v1/shape`): `<tx>_<op>` or `<tx>_inf` with
 * the `handle` it belongs to, or `now` (the log's current end; `handle` is then optional). `-1`
 * is refused: snapshots are read over HTTP. `id` is chosen by the client (1 to 64 characters),
 * unique among the socket's subscriptions; every server frame about the subscription carries it.
 */
export interface WsSubscribeFrame {
  type: typeof WS_FRAME_TYPES.subscribe;
  id: string;
  params: WsShapeParams;
  handle?: string;
  offset: string;
}

/** Ends a subscription. An id the socket does not hold is ignored (it may have just ended). */
export interface WsUnsubscribeFrame {
  type: typeof WS_FRAME_TYPES.unsubscribe;
  id: string;
}

export type WsClientFrame = WsSubscribeFrame | WsUnsubscribeFrame;

/**
 * One read of a subscription's log: the body an HTTP answer at `(handle, previous offset)` would
 * carry, ending with `up-to-date` exactly when the HTTP answer would (`electric-up-to-date`).
 * `offset` is that answer's `electric-offset` (the last entry served): where to resume from. The
 * first frame of every subscription comes at once, with `schema` (the `electric-schema` object):
 * the entries after the subscribed offset, or `up-to-date` alone at that offset when there are
 * none. Later frames come whenever entries are durably stored, without `schema`.
 */
export interface WsMessagesFrame {
  type: typeof WS_FRAME_TYPES.messages;
  id: string;
  handle: string;
  offset: string;
  schema?: Record<string, unknown>;
  messages: WireMessage[];
}

/**
 * The subscription's handle is no longer the shape's (the HTTP answer would be a 409 naming
 * `handle`). The subscription has ended: read the shape again over HTTP from `offset=-1` with
 * this handle, then subscribe anew.
 */
export interface WsMustRefetchFrame {
  type: typeof WS_FRAME_TYPES.mustRefetch;
  id: string;
  handle: string;
}

/**
 * A refusal or failure, with the status and code a `GET /v1/shape` with those parameters would
 * get (docs/protocol.md §10). With `id`: no subscription with that id exists any more (it was
 * refused or has ended); the socket's other subscriptions go on. Without `id`: the frame could
 * not be read far enough to name one (malformed JSON, not an object, no valid `id`). `errors` lists
 * the problems by field, as a 400's body does; `retry_after` (seconds) comes with every 503.
 */
export interface WsErrorFrame {
  type: typeof WS_FRAME_TYPES.error;
  id?: string;
  status: number;
  code: ErrorCode;
  message: string;
  errors?: Record<string, unknown>;
  retry_after?: number;
}

/**
 * The server's state, the body of `GET /v1/status` (docs/protocol.md §7.2): sent when the socket
 * opens and whenever `status.status` changes. When it leaves `live`, every subscription of the
 * socket has ended (the socket stays open; subscribes are refused with a 503 until `live`
 * returns); when it says `live` again, clients subscribe anew from their last offsets.
 */
export interface WsStatusFrame {
  type: typeof WS_FRAME_TYPES.status;
  status: StatusDocument;
}

export type WsServerFrame = WsMessagesFrame | WsMustRefetchFrame | WsErrorFrame | WsStatusFrame;

/**
 * Close codes of `/v1/ws`. A socket that stops answering pings is cut without a close frame
 * (clients see 1006). Refusals before the upgrade (wrong secret 401, Origin not allowed 403,
 * too many sockets 503) are HTTP answers, not close codes.
 */
export const WS_CLOSE_CODES = {
  /** The client closed, or the server ended the socket in good order. */
  normal: 1000,
  /** The server is shutting down: reconnect (to another instance or later). */
  goingAway: 1001,
  /** A frame larger than the server's maximum frame size. */
  messageTooBig: 1009,
  /**
   * Backpressure: the socket's unsent bytes passed the server's limit (the client reads too
   * slowly). Reconnect and resume every subscription from its last offset (read over HTTP first
   * if far behind).
   */
  sendBufferFull: 4000,
} as const;

export type WsCloseCode = (typeof WS_CLOSE_CODES)[keyof typeof WS_CLOSE_CODES];
