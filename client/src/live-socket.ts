/*
 * The WebSocket live transport's client side (docs/protocol.md §12): one socket per server URL
 * (and WebSocket constructor) for the whole page, shared by every stream that follows a shape
 * there, reference-counted, closed when the last one lets go. It carries subscriptions (a
 * stream's live log from a (handle, offset) it read over HTTP) and the server's pushed status.
 *
 * The socket knows nothing of shapes: it passes each subscription's frames to its stream, and
 * tells every stream when it opens, closes or the server's state changes, so that streams decide
 * for themselves (over the socket, over long-polls, or wait). A lost socket is reconnected with
 * jittered exponential backoff; the streams resubscribe from their own last offsets.
 */
import {
  WS_CLOSE_CODES,
  WS_FRAME_TYPES,
  type ServerState,
  type WsErrorFrame,
  type WsMessagesFrame,
  type WsServerFrame,
  type WsSubscribeFrame,
} from '@sluice/protocol';
import { backoffDelay, type BackoffOptions } from './backoff.js';

/** How a stream follows a shape once it is up to date. */
export type LiveTransport = 'auto' | 'websocket' | 'long-poll';

/**
 * What the client needs of a WebSocket: the browser's, Node 22's global one and the `ws`
 * package's all fit. (`never` parameters let each keep its own event types.)
 */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: never) => void) | null;
  onmessage: ((event: never) => void) | null;
  onclose: ((event: never) => void) | null;
  onerror: ((event: never) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** `readyState` of an open WebSocket (the same in every implementation). */
const OPEN = 1;

/** What a subscription hears: its frames, or that it ended without one (socket or status). */
export type SubscriptionEvent =
  /** `bytes`: the frame's length as received, what holding it costs. */
  | { readonly type: 'messages'; readonly frame: WsMessagesFrame; readonly bytes: number }
  | { readonly type: 'must-refetch'; readonly handle: string }
  | { readonly type: 'error'; readonly frame: WsErrorFrame }
  | { readonly type: 'ended' };

/** A stream's interest in the server's state while it is in fallback. */
export interface StatusWatcher {
  readonly onStatus: (status: ServerState) => void;
  /** Starts polling `/v1/status` (used while no socket is open); returns how to stop. */
  readonly poll: () => () => void;
}

export type SocketPhase = 'connecting' | 'open' | 'waiting';

export class LiveSocket {
  readonly #url: string;
  readonly #construct: WebSocketConstructor;
  readonly #backoff: BackoffOptions;
  readonly #forget: () => void;
  #refs = 0;
  #socket: WebSocketLike | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #phase: SocketPhase = 'waiting';
  /** Failed attempts since the socket was last open: the backoff's attempt number. */
  #failures = 0;
  #upgradeFailed = false;
  #status: ServerState | undefined;
  #statusChanges = 0;
  #nextId = 0;
  readonly #subscriptions = new Map<string, (event: SubscriptionEvent) => void>();
  readonly #listeners = new Set<() => void>();
  /** Watchers in fallback, with the stop of their status poller while one runs. */
  readonly #watchers = new Map<StatusWatcher, (() => void) | undefined>();

  constructor(
    url: string,
    construct: WebSocketConstructor,
    backoff: BackoffOptions,
    forget: () => void,
  ) {
    this.#url = url;
    this.#construct = construct;
    this.#backoff = backoff;
    this.#forget = forget;
  }

  get phase(): SocketPhase {
    return this.#phase;
  }

  /** The last attempt to open failed before the upgrade (refused, blocked by a proxy, no server). */
  get upgradeFailed(): boolean {
    return this.#upgradeFailed;
  }

  /** The server's state as last pushed on the open socket; undefined while closed. */
  get status(): ServerState | undefined {
    return this.#status;
  }

  retain(): void {
    this.#refs++;
    if (this.#refs === 1 && this.#phase === 'waiting' && this.#timer === undefined) this.#open();
  }

  /** Lets go of the socket; the last release closes it. */
  release(): void {
    if (--this.#refs > 0) return;
    this.#forget();
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const socket = this.#socket;
    this.#socket = undefined;
    this.#phase = 'waiting';
    this.#status = undefined;
    this.#end();
    this.#syncPolling();
    try {
      socket?.close(WS_CLOSE_CODES.normal);
    } catch {
      // Closing a socket that is still connecting may throw in some runtimes: it is gone anyway.
    }
  }

  /** Counts the changes of the pushed status: tells a stream whether it has seen the last one. */
  get statusChanges(): number {
    return this.#statusChanges;
  }

  /** Calls `listener` whenever the socket opens or closes, or the pushed status changes. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Follows a shape on the open socket; `onEvent` gets its frames until it ends (a must-refetch
   * or an error frame, the socket closing, the server leaving `live`) or is unsubscribed.
   */
  subscribe(
    request: Omit<WsSubscribeFrame, 'type' | 'id'>,
    onEvent: (event: SubscriptionEvent) => void,
  ): () => void {
    // Closed, or the server not live, since the stream looked: it would hear nothing.
    if (this.#phase !== 'open' || (this.#status !== undefined && this.#status !== 'live')) {
      onEvent({ type: 'ended' });
      return () => undefined;
    }
    const id = `s${++this.#nextId}`;
    this.#subscriptions.set(id, onEvent);
    this.#send({ type: WS_FRAME_TYPES.subscribe, id, ...request });
    return () => {
      if (this.#subscriptions.delete(id)) this.#send({ type: WS_FRAME_TYPES.unsubscribe, id });
    };
  }

  /** Status for a stream in fallback: pushed while the socket is open, else polled. */
  watchStatus(watcher: StatusWatcher): () => void {
    this.#watchers.set(watcher, undefined);
    this.#syncPolling();
    // Pushes come only on changes: a watcher that arrives later hears the current state now.
    if (this.#phase === 'open' && this.#status !== undefined) watcher.onStatus(this.#status);
    return () => {
      this.#watchers.get(watcher)?.();
      this.#watchers.delete(watcher);
    };
  }

  #open(): void {
    this.#phase = 'connecting';
    let socket: WebSocketLike;
    try {
      socket = new this.#construct(this.#url);
    } catch {
      // A URL the runtime refuses (or a constructor that throws): as a failed upgrade.
      this.#closed(false);
      return;
    }
    this.#socket = socket;
    let opened = false;
    socket.onopen = () => {
      if (this.#socket !== socket) return;
      opened = true;
      this.#phase = 'open';
      this.#failures = 0;
      this.#upgradeFailed = false;
      this.#syncPolling();
      this.#changed();
    };
    socket.onmessage = (event: { data: unknown }) => {
      if (this.#socket === socket) this.#receive(event.data);
    };
    socket.onclose = () => {
      if (this.#socket === socket) this.#closed(opened);
    };
    // Every failure also closes the socket; the close decides. (A listener must stay set:
    // the `ws` package throws an error event that has none.)
    socket.onerror = () => undefined;
  }

  /** The socket closed (or never opened): end every subscription, and try again later. */
  #closed(wasOpen: boolean): void {
    this.#socket = undefined;
    this.#phase = 'waiting';
    this.#status = undefined;
    this.#upgradeFailed = !wasOpen;
    this.#failures++;
    this.#end();
    this.#syncPolling();
    this.#changed();
    if (this.#refs === 0) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        if (this.#refs > 0) this.#open();
      },
      backoffDelay(this.#failures, this.#backoff),
    );
  }

  #receive(data: unknown): void {
    let frame: WsServerFrame;
    const text = typeof data === 'string' ? data : String(data);
    try {
      frame = JSON.parse(text) as WsServerFrame;
    } catch {
      return; // Not JSON: nothing a subscription could act on.
    }
    if (typeof frame !== 'object' || frame === null) return;
    switch (frame.type) {
      case WS_FRAME_TYPES.status:
        return this.#statusPushed(frame.status?.status);
      case WS_FRAME_TYPES.messages:
        return this.#subscriptions.get(frame.id)?.({ type: 'messages', frame, bytes: text.length });
      case WS_FRAME_TYPES.mustRefetch:
        return this.#finish(frame.id, { type: 'must-refetch', handle: frame.handle });
      case WS_FRAME_TYPES.error:
        // Without an id the frame refused something this client never sends: nothing to end.
        if (frame.id !== undefined) this.#finish(frame.id, { type: 'error', frame });
        return;
    }
  }

  #statusPushed(status: ServerState | undefined): void {
    if (typeof status !== 'string') return;
    const changed = status !== this.#status;
    this.#status = status;
    if (changed) this.#statusChanges++;
    // Leaving live ends every subscription on the server: end them here too.
    if (status !== 'live') this.#end();
    for (const watcher of [...this.#watchers.keys()]) watcher.onStatus(status);
    if (changed) this.#changed();
  }

  /** A subscription the server ended: it hears why, and nothing more. */
  #finish(id: string, event: SubscriptionEvent): void {
    const onEvent = this.#subscriptions.get(id);
    this.#subscriptions.delete(id);
    onEvent?.(event);
  }

  #end(): void {
    const ended = [...this.#subscriptions.values()];
    this.#subscriptions.clear();
    for (const onEvent of ended) onEvent({ type: 'ended' });
  }

  #send(frame: object): void {
    const socket = this.#socket;
    if (socket?.readyState !== OPEN) return;
    try {
      socket.send(JSON.stringify(frame));
    } catch {
      // The socket is closing: its close event ends the subscriptions.
    }
  }

  /** Polls run exactly while a watcher waits and no socket is open. */
  #syncPolling(): void {
    const open = this.#phase === 'open';
    for (const [watcher, stop] of this.#watchers) {
      if (open && stop) {
        stop();
        this.#watchers.set(watcher, undefined);
      } else if (!open && !stop) this.#watchers.set(watcher, watcher.poll());
    }
  }

  #changed(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}

/** Every socket of the page (or process), by WebSocket constructor and URL. */
const sockets = new Map<WebSocketConstructor, Map<string, LiveSocket>>();

/**
 * The page's socket to `url` (opened on the first call), retained for the caller: call
 * `release()` once done. Streams of one server share it, whatever shapes they follow.
 */
export function acquireLiveSocket(
  url: string,
  construct: WebSocketConstructor,
  backoff: BackoffOptions,
): LiveSocket {
  let byUrl = sockets.get(construct);
  if (!byUrl) {
    byUrl = new Map<string, LiveSocket>();
    sockets.set(construct, byUrl);
  }
  let socket = byUrl.get(url);
  if (!socket) {
    const urls = byUrl;
    socket = new LiveSocket(url, construct, backoff, () => {
      urls.delete(url);
      if (urls.size === 0) sockets.delete(construct);
    });
    byUrl.set(url, socket);
  }
  socket.retain();
  return socket;
}
