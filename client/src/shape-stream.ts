import {
  CONTROL,
  HEADERS,
  PARAMS,
  type ServerState,
  type WsErrorFrame,
  type WsMessagesFrame,
} from '@sluice/protocol';
import { AsyncQueue } from './async-queue.js';
import { BackoffDefaults, backoffDelay, sleep, type BackoffOptions } from './backoff.js';
import { FetchError, MissingHeadersError } from './errors.js';
import { fetchWithBackoff } from './fetch-with-backoff.js';
import {
  acquireLiveSocket,
  type LiveSocket,
  type LiveTransport,
  type SubscriptionEvent,
  type WebSocketConstructor,
} from './live-socket.js';
import type { ControlMessage, GetExtensions, LogMode, Message, Offset, Row } from './messages.js';
import { readShapeResponse, type ShapeResponse } from './shape-response.js';
import { resolveHeaders, resolveParams, validateParams } from './shape-params.js';
import {
  FALLBACK_REFRESH_INTERVAL_MS,
  STATUS_POLL_INTERVAL_MS,
  validateOptions,
  webSocketOf,
  type ShapeStreamOptions,
} from './shape-stream-options.js';
import {
  createInitialState,
  currentPosition,
  currentSchema,
  isUpToDate,
  nextRequest,
  transition,
  type MachineConfig,
  type Mode,
  type MustRefetchReason,
  type RequestPlan,
  type ResponseEvent,
  type StreamEvent,
  type StreamState,
  type Transition,
} from './shape-stream-state.js';
import { absoluteUrl, defaultSocketUrl, defaultStatusUrl, shapeUrl } from './shape-url.js';
import { frameError, frameResponse, subscribeParams, upgradeSecret } from './socket-frames.js';
import { watchServerStatus } from './status-poller.js';
import { ValueParser } from './value-parser.js';

/** Receives every batch of messages, with the mode the server was in when it sent them. */
export type ShapeStreamSubscriber<T extends Row<unknown>> = (
  messages: Message<T>[],
  batch: { mode: Mode },
) => void | Promise<void>;

/** What `Shape` needs of a stream. */
export interface ShapeStreamInterface<T extends Row<unknown> = Row> {
  subscribe(callback: ShapeStreamSubscriber<T>, onError?: (error: Error) => void): () => void;
  readonly mode: Mode;
  readonly logMode: LogMode;
  lastSyncedAt(): number | undefined;
  isConnected(): boolean;
  isLoading(): boolean;
}

/** One reference for every stream without a fetch client of its own: they share status pollers. */
const defaultFetch: typeof fetch = (input, init) => fetch(input, init);

/**
 * Frames a socket subscription may hold that its subscriber has not taken yet; past this it reads
 * on over HTTP instead (one frame is at most one chunk of the log, so more than one is kept).
 */
const MAX_QUEUED_FRAME_BYTES = 8 * 1024 * 1024;

/** `onError` may ask for a retry this many times in a row before the stream gives up. */
const MAX_ERROR_RETRIES = 50;

const randomCacheBuster = () => `${Date.now()}-${Math.random().toString(36).slice(2, 9)}`;

function mustRefetchMessage(reason: MustRefetchReason): ControlMessage {
  // `fallback: true` tells a refresh of the fallback rows from a real refetch.
  return reason === 'fallback-refresh'
    ? { headers: { control: CONTROL.mustRefetch, fallback: true } }
    : { headers: { control: CONTROL.mustRefetch } };
}

/** Rethrown outside the stream: a subscriber's bug must not stop the others, nor be lost. */
function reportLater(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}

/**
 * Follows one shape: `new ShapeStream({ url, params: { table } })`. Requests, responses and
 * retries happen here; what to request next and what a response means is decided by the state
 * machine in `shape-stream-state.ts` (client/SPEC.md). The stream runs while it has subscribers
 * and stops for good when `signal` aborts.
 */
export class ShapeStream<T extends Row<unknown> = Row> implements ShapeStreamInterface<T> {
  readonly options: ShapeStreamOptions<GetExtensions<T>>;
  readonly logMode: LogMode;
  readonly #fetchClient: typeof fetch;
  readonly #backoff: BackoffOptions;
  readonly #parser: ValueParser<T>;
  readonly #config: MachineConfig;
  readonly #statusUrl: string;
  readonly #statusPollIntervalMs: number;
  readonly #refreshIntervalMs: number;
  readonly #subscribers = new Map<
    object,
    { callback: ShapeStreamSubscriber<T>; onError?: (error: Error) => void }
  >();
  readonly #modeListeners = new Set<(mode: Mode) => void>();
  #state: StreamState;
  /** Aborted to stop the running loop; undefined while stopped. */
  #run: AbortController | undefined;
  /** The loop that ran last: a restarted one waits for it to end. */
  #loopDone: Promise<void> = Promise.resolve();
  /** The shape request in flight. */
  #request: AbortController | undefined;
  /** Set when `forceDisconnectAndRefresh` aborts a long-poll: the abort is no error. */
  #restartRequested = false;
  /** `forceDisconnectAndRefresh` calls waiting: meanwhile a live state catches up, not polls. */
  #refreshing = 0;
  /** Status polls and refresh timers, handled by the loop between requests. */
  #events: StreamEvent[] = [];
  /** Ends the loop's wait in fallback. */
  #wake: (() => void) | undefined;
  #unwatchStatus: (() => void) | undefined;
  /** Resolved after the next answered request. */
  #tickWaiters: (() => void)[] = [];
  #connected = false;
  #error: Error | undefined;
  #errorRetries = 0;
  /** The live transport and the WebSocket it may use (none for `long-poll`). */
  readonly #transport: LiveTransport;
  readonly #webSocket: WebSocketConstructor | undefined;
  /** The page's socket to this server, retained while the stream runs and has needed it. */
  #socket: LiveSocket | undefined;
  /** The server left `live` (a pushed status): ask for a catch-up at once, not a long-poll. */
  #catchUpNext = false;
  /** The socket's `statusChanges` this stream has acted on. */
  #statusChangesSeen = 0;
  /** Retryable error frames in a row (503s while the server gets ready, …). */
  #socketRetries = 0;

  constructor(options: ShapeStreamOptions<GetExtensions<T>>) {
    validateOptions(options);
    this.options = { subscribe: true, ...options };
    this.#state = createInitialState(options);
    this.logMode = options.log ?? options.params?.log ?? 'full';
    // A changes_only log's fallback answer is empty: it would wipe the rows, not refresh them.
    this.#config = { refreshInFallback: this.logMode === 'full' };
    this.#fetchClient = options.fetchClient ?? defaultFetch;
    this.#backoff = {
      ...BackoffDefaults,
      ...options.backoffOptions,
      onFailedAttempt: () => {
        this.#connected = false;
        options.backoffOptions?.onFailedAttempt?.();
      },
    };
    this.#parser = new ValueParser<T>(options.parser);
    this.#statusUrl = options.statusUrl ?? defaultStatusUrl(options.url);
    this.#statusPollIntervalMs = options.statusPollIntervalMs ?? STATUS_POLL_INTERVAL_MS;
    this.#refreshIntervalMs = options.fallbackRefreshIntervalMs ?? FALLBACK_REFRESH_INTERVAL_MS;
    if (options.onModeChange) this.#modeListeners.add(options.onModeChange);
    this.#transport = options.liveTransport ?? 'auto';
    this.#webSocket = webSocketOf(options);
  }

  get shapeHandle(): string | undefined {
    return currentPosition(this.#state).handle;
  }

  get lastOffset(): Offset {
    return currentPosition(this.#state).offset;
  }

  get isUpToDate(): boolean {
    return isUpToDate(this.#state);
  }

  /** `fallback` while the server says so (docs/protocol.md §7); `live` otherwise, and before it said. */
  get mode(): Mode {
    return this.#state.mode ?? 'live';
  }

  /** The error that stopped the stream, if one did. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** When the data was last complete (ms since the epoch); undefined before the first time. */
  lastSyncedAt(): number | undefined {
    return this.#state.lastSyncedAt;
  }

  /** Ms since `lastSyncedAt()`; Infinity before the first sync. */
  lastSynced(): number {
    const at = this.#state.lastSyncedAt;
    return at === undefined ? Infinity : Date.now() - at;
  }

  isConnected(): boolean {
    return this.#connected;
  }

  isLoading(): boolean {
    return !this.isUpToDate;
  }

  /** Starts the stream (if it is not running) and delivers every batch from now on. */
  subscribe(callback: ShapeStreamSubscriber<T>, onError?: (error: Error) => void): () => void {
    const id = {};
    this.#subscribers.set(id, { callback, onError });
    this.#start();
    return () => {
      this.#subscribers.delete(id);
      if (this.#subscribers.size === 0) this.#stop();
    };
  }

  /** Removes every subscriber, which stops the stream (requests and status polling). */
  unsubscribeAll(): void {
    this.#subscribers.clear();
    this.#stop();
  }

  /** Calls `listener` when the mode becomes known and on every change; returns how to stop. */
  onModeChange(listener: (mode: Mode) => void): () => void {
    this.#modeListeners.add(listener);
    return () => this.#modeListeners.delete(listener);
  }

  /**
   * Ends a held long-poll and asks for what is new at once; in fallback, fetches fresh fallback
   * rows now. Resolves once that request has been answered.
   */
  async forceDisconnectAndRefresh(): Promise<void> {
    if (!this.#run) return;
    const state = this.#state;
    if (state.kind === 'fallback' && !this.#config.refreshInFallback) return;
    this.#refreshing++;
    try {
      const answered = new Promise<void>((resolve) => this.#tickWaiters.push(resolve));
      if (state.kind === 'fallback') this.#dispatch({ type: 'refresh-due' });
      else if (state.kind === 'live') {
        // A held long-poll or socket subscription ends; a wait for the socket is cut short.
        this.#restartRequest();
        this.#wake?.();
      }
      await answered;
    } finally {
      this.#refreshing--;
    }
  }

  #start(): void {
    if (this.#run || this.#error || this.options.signal?.aborted) return;
    const run = new AbortController();
    this.#run = run;
    const onAbort = () => this.#stop();
    this.options.signal?.addEventListener('abort', onAbort, { once: true });
    this.#loopDone = this.#loopDone
      .then(() => this.#loop(run.signal))
      .catch(reportLater)
      .finally(() => {
        this.options.signal?.removeEventListener('abort', onAbort);
        if (this.#run === run) this.#run = undefined;
        this.#connected = false;
        this.#socket?.release();
        this.#socket = undefined;
        this.#settleTicks();
      });
  }

  #stop(): void {
    const run = this.#run;
    if (!run) return;
    this.#run = undefined;
    run.abort();
    this.#events = [];
    this.#stopWatchingStatus();
    this.#wake?.();
  }

  async #loop(stop: AbortSignal): Promise<void> {
    while (!stop.aborted) {
      for (const event of this.#events.splice(0)) await this.#handle(event);
      const plan = nextRequest(this.#state, {
        subscribe: this.options.subscribe !== false,
        longPoll: this.#refreshing === 0 && !this.#catchUpNext,
        now: Date.now(),
        refreshIntervalMs: this.#refreshIntervalMs,
      });
      this.#catchUpNext = false;
      if (plan === 'done') return;
      if (plan === 'wait') {
        await this.#idleInFallback(stop);
        continue;
      }
      try {
        const route = plan.live ? await this.#liveRoute(stop) : 'http';
        if (route === 'wait') continue;
        if (route === 'socket') await this.#followOnSocket(plan, stop);
        else await this.#fetchWhileSocketUnusable(plan, stop);
        this.#errorRetries = 0;
        this.#restartRequested = false;
        this.#settleTicks();
      } catch (error) {
        if (stop.aborted) return;
        if (this.#restartRequested) {
          this.#restartRequested = false;
          continue;
        }
        if (!(await this.#recover(error, stop))) return;
      }
    }
  }

  async #fetchShape(plan: RequestPlan, stop: AbortSignal): Promise<void> {
    const [params, headers] = await Promise.all([
      resolveParams(this.options.params),
      resolveHeaders(this.options.headers),
    ]);
    const url = shapeUrl(this.options.url, params, plan, this.logMode);
    const controller = new AbortController();
    const onStop = () => controller.abort();
    stop.addEventListener('abort', onStop, { once: true });
    this.#request = controller;
    try {
      let reply: ShapeResponse;
      try {
        const init = { headers, signal: controller.signal };
        reply = await fetchWithBackoff(this.#fetchClient, url, init, this.#backoff, (response) =>
          readShapeResponse(response, url.toString(), plan.live),
        );
      } catch (error) {
        if (!(error instanceof FetchError) || error.status !== 409) throw error;
        this.#connected = true;
        const handle = error.headers[HEADERS.handle];
        return await this.#handle({
          type: 'must-refetch',
          handle,
          cacheBuster: randomCacheBuster(),
        });
      }
      this.#connected = true;
      const { messages, ...meta } = reply;
      const event = { type: 'response', request: plan, ...meta, now: Date.now() } as const;
      await this.#apply(event, messages, url.toString());
    } finally {
      stop.removeEventListener('abort', onStop);
      this.#request = undefined;
    }
  }

  /** A batch of the log (an HTTP answer or a socket frame) through the state machine. */
  async #apply(
    event: ResponseEvent,
    messages: Record<string, unknown>[],
    source: string,
  ): Promise<void> {
    const next = transition(this.#state, event, this.#config);
    if (next.discard) return this.#setState(next.state);
    // Parsed before the state moves on: a value that fails to parse leaves the offset as it was.
    const schema = event.schema ?? currentSchema(this.#state);
    if (!schema && messages.some((message) => 'key' in message))
      throw new MissingHeadersError(source, [HEADERS.schema]);
    await this.#commit(next, this.#parser.parseMessages(messages, schema ?? {}));
  }

  /** Ends the request in flight (a long-poll, a socket subscription) so the loop plans anew. */
  #restartRequest(): void {
    if (!this.#request || this.#request.signal.aborted) return;
    this.#restartRequested = true;
    this.#request.abort();
  }

  /**
   * Where a live request goes: over the socket when it is open and the server live; over HTTP
   * when there is no socket to use, the server is not live (the answer says what the server is)
   * or, in `auto`, the upgrade failed; otherwise (`wait`) the loop plans again, after waiting
   * for the socket to change.
   */
  async #liveRoute(stop: AbortSignal): Promise<'socket' | 'http' | 'wait'> {
    const socket = await this.#acquireSocket();
    if (!socket || stop.aborted) return 'http';
    if (socket.phase === 'open') {
      if (this.#socketUsable()) return 'socket';
      // The server left live: a catch-up says so at once (its fallback header), where a
      // long-poll would be held. After that, long-polls, until the socket is usable again.
      if (socket.statusChanges === this.#statusChangesSeen) return 'http';
      this.#statusChangesSeen = socket.statusChanges;
      this.#catchUpNext = true;
      return 'wait';
    }
    if (this.#transport === 'auto' && socket.upgradeFailed) return 'http';
    await new Promise<void>((resolve) => {
      const done = () => {
        unlisten();
        stop.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const unlisten = socket.onChange(done);
      stop.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
    return 'wait';
  }

  #socketUsable(): boolean {
    const socket = this.#socket;
    return socket?.phase === 'open' && (socket.status === undefined || socket.status === 'live');
  }

  /** An HTTP request; a long-poll gives way as soon as the socket can carry it. */
  async #fetchWhileSocketUnusable(plan: RequestPlan, stop: AbortSignal): Promise<void> {
    const unlisten =
      plan.live && this.#socket
        ? this.#socket.onChange(() => {
            if (this.#socketUsable()) this.#restartRequest();
          })
        : undefined;
    try {
      await this.#fetchShape(plan, stop);
    } finally {
      unlisten?.();
    }
  }

  /** The page's socket to this server, once the stream needs it; none for long-polls only. */
  async #acquireSocket(): Promise<LiveSocket | undefined> {
    if (this.#socket || !this.#webSocket) return this.#socket;
    const [params, headers] = await Promise.all([
      resolveParams(this.options.params),
      resolveHeaders(this.options.headers),
    ]);
    if (this.#socket || !this.#run) return this.#socket;
    const url = this.#socketEndpoint();
    const secret = upgradeSecret(params, headers);
    if (secret !== undefined) url.searchParams.set(PARAMS.secret, secret);
    this.#socket = acquireLiveSocket(url.toString(), this.#webSocket, this.#backoff);
    return this.#socket;
  }

  /** `webSocketUrl` (relative, or `http(s):`, taken as `ws(s):`), else the one next to `url`. */
  #socketEndpoint(): URL {
    const url = absoluteUrl(this.options.webSocketUrl ?? defaultSocketUrl(this.options.url));
    if (url.protocol === 'http:') url.protocol = 'ws:';
    if (url.protocol === 'https:') url.protocol = 'wss:';
    return url;
  }

  /** The socket's URL as errors name it: without the secret. */
  #socketSource(): string {
    const url = this.#socketEndpoint();
    url.searchParams.delete(PARAMS.secret);
    return url.toString();
  }

  /**
   * Follows the live log on the shared socket from the plan's position: every frame is applied
   * as the long-poll answer it stands for, until the subscription ends (a must-refetch, an
   * error, the socket closing, the server leaving live) or the request is restarted or stopped.
   */
  async #followOnSocket(plan: RequestPlan, stop: AbortSignal): Promise<void> {
    const socket = this.#socket;
    if (!socket) return;
    const params = await resolveParams(this.options.params);
    const controller = new AbortController();
    const onStop = () => controller.abort();
    stop.addEventListener('abort', onStop, { once: true });
    this.#request = controller;
    const inbox = new AsyncQueue<SubscriptionEvent | { type: 'overflowed' }>();
    let queuedBytes = 0;
    const unsubscribe = socket.subscribe(
      { params: subscribeParams(params, this.logMode), handle: plan.handle, offset: plan.offset },
      (event) => {
        if (event.type === 'messages') {
          // The server sends as fast as the network takes frames; a subscriber slower than that
          // must not make the queue grow without bound.
          queuedBytes += event.bytes;
          if (inbox.size > 0 && queuedBytes > MAX_QUEUED_FRAME_BYTES) {
            unsubscribe();
            inbox.clear();
            inbox.push({ type: 'overflowed' });
            return;
          }
        }
        inbox.push(event);
      },
    );
    try {
      for (;;) {
        const event = await inbox.next(controller.signal);
        switch (event.type) {
          case 'overflowed':
            // Frames not applied were dropped: read on over HTTP from the last one applied, at
            // the subscriber's pace, then subscribe again (docs: client README, "Live over a
            // WebSocket").
            this.#catchUpNext = true;
            return;
          case 'messages':
            queuedBytes -= event.bytes;
            await this.#applyFrame(plan, event.frame);
            this.#connected = true;
            this.#socketRetries = 0;
            this.#errorRetries = 0;
            this.#settleTicks();
            // Fallback data never comes on a socket; a state that left the log ends the follow.
            if (this.#state.kind !== 'live' && this.#state.kind !== 'syncing') return;
            break;
          case 'must-refetch':
            this.#connected = true;
            return await this.#handle({
              type: 'must-refetch',
              handle: event.handle,
              cacheBuster: randomCacheBuster(),
            });
          case 'error':
            return await this.#socketError(event.frame, controller.signal);
          case 'ended':
            // The socket closed or the server left live: the next route decides what follows.
            this.#connected = false;
            return;
        }
      }
    } finally {
      unsubscribe();
      stop.removeEventListener('abort', onStop);
      this.#request = undefined;
    }
  }

  async #applyFrame(plan: RequestPlan, frame: WsMessagesFrame): Promise<void> {
    const source = this.#socketSource();
    const { event, messages } = frameResponse(plan, frame, source);
    await this.#apply(event, messages, source);
  }

  /**
   * An error frame is what the HTTP answer would have been: 5xx and 429 are retried after a
   * backoff (never sooner than `retry_after`), anything else is thrown as its `FetchError`.
   */
  async #socketError(frame: WsErrorFrame, signal: AbortSignal): Promise<void> {
    const error = frameError(frame, this.#socketSource());
    const { status } = error;
    const retryAfter = typeof frame.retry_after === 'number' ? frame.retry_after : 0;
    this.#connected = false;
    if (!(status === 429 || status >= 500)) throw error;
    this.#backoff.onFailedAttempt?.();
    if (++this.#socketRetries > (this.#backoff.maxRetries ?? Infinity)) throw error;
    const delay = backoffDelay(this.#socketRetries, this.#backoff, retryAfter * 1_000);
    await sleep(delay, signal);
  }

  /** An event that is not a response: a 409, a status poll, a refresh timer. */
  async #handle(event: StreamEvent): Promise<void> {
    await this.#commit(transition(this.#state, event, this.#config), []);
  }

  async #commit(next: Transition, messages: Message<T>[]): Promise<void> {
    this.#setState(next.state);
    if (next.modeChanged) {
      for (const listener of [...this.#modeListeners]) {
        try {
          listener(next.modeChanged);
        } catch (error) {
          reportLater(error);
        }
      }
    }
    const batch = next.mustRefetch ? [mustRefetchMessage(next.mustRefetch), ...messages] : messages;
    if (batch.length > 0 || next.modeChanged) await this.#publish(batch);
  }

  #setState(state: StreamState): void {
    this.#state = state;
    if (state.kind !== 'fallback') this.#stopWatchingStatus();
  }

  async #publish(messages: Message<T>[]): Promise<void> {
    const batch = { mode: this.mode };
    await Promise.all(
      [...this.#subscribers.values()].map(async ({ callback }) => {
        try {
          await callback(messages, batch);
        } catch (error) {
          reportLater(error);
        }
      }),
    );
  }

  /**
   * In fallback with nothing due: watch the status (shared with every stream on the same server)
   * and wait for it to read live, for the refresh interval to pass, or for the stream to stop.
   */
  async #idleInFallback(stop: AbortSignal): Promise<void> {
    const socket = await this.#acquireSocket();
    const watch = {
      intervalMs: this.#statusPollIntervalMs,
      onStatus: (status: ServerState) => this.#dispatch({ type: 'status', status }),
    };
    const poll = () => watchServerStatus(this.#statusUrl, this.#fetchClient, watch);
    // Pushed on the socket while it is open (the server's state the moment it changes), else polled.
    if (this.#state.kind === 'fallback' && !stop.aborted)
      this.#unwatchStatus ??= socket
        ? socket.watchStatus({ onStatus: watch.onStatus, poll })
        : poll();
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (this.#state.kind === 'fallback' && this.#config.refreshInFallback) {
      const due = this.#state.refreshedAt + this.#refreshIntervalMs - Date.now();
      timer = setTimeout(() => this.#dispatch({ type: 'refresh-due' }), Math.max(due, 0));
    }
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
      if (this.#events.length > 0 || stop.aborted) resolve();
    });
    clearTimeout(timer);
    this.#wake = undefined;
  }

  #dispatch(event: StreamEvent): void {
    this.#events.push(event);
    this.#wake?.();
  }

  #stopWatchingStatus(): void {
    this.#unwatchStatus?.();
    this.#unwatchStatus = undefined;
  }

  #settleTicks(): void {
    for (const resolve of this.#tickWaiters.splice(0)) resolve();
  }

  /**
   * After an error retries could not fix: `onError` may return new params or headers (or `{}`)
   * to try again, after a backoff; otherwise subscribers are told and the stream stops.
   */
  async #recover(error: unknown, stop: AbortSignal): Promise<boolean> {
    const failure = error instanceof Error ? error : new Error(String(error));
    const retry = await this.options.onError?.(failure);
    // Missing headers are a proxy's configuration: retrying cannot help.
    const retryable = !(failure instanceof MissingHeadersError);
    if (retry && retryable && ++this.#errorRetries <= MAX_ERROR_RETRIES) {
      if (retry.params) {
        validateParams(retry.params);
        this.options.params = { ...this.options.params, ...retry.params };
      }
      if (retry.headers) this.options.headers = { ...this.options.headers, ...retry.headers };
      await sleep(backoffDelay(this.#errorRetries, this.#backoff), stop).catch(() => undefined);
      return !stop.aborted;
    }
    this.#error = failure;
    for (const { onError } of this.#subscribers.values()) onError?.(failure);
    return false;
  }
}
