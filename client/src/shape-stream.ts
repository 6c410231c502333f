import { CONTROL, HEADERS } from '@sluice/protocol';
import { BackoffDefaults, backoffDelay, sleep, type BackoffOptions } from './backoff.js';
import { FetchError, MissingHeadersError } from './errors.js';
import { fetchWithBackoff } from './fetch-with-backoff.js';
import type { ControlMessage, GetExtensions, LogMode, Message, Offset, Row } from './messages.js';
import { readShapeResponse } from './shape-response.js';
import { resolveHeaders, resolveParams, validateParams } from './shape-params.js';
import {
  FALLBACK_REFRESH_INTERVAL_MS,
  STATUS_POLL_INTERVAL_MS,
  validateOptions,
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
  type StreamEvent,
  type StreamState,
  type Transition,
} from './shape-stream-state.js';
import { defaultStatusUrl, shapeUrl } from './shape-url.js';
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
      else if (state.kind === 'live' && this.#request && !this.#request.signal.aborted) {
        this.#restartRequested = true;
        this.#request.abort();
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
        longPoll: this.#refreshing === 0,
        now: Date.now(),
        refreshIntervalMs: this.#refreshIntervalMs,
      });
      if (plan === 'done') return;
      if (plan === 'wait') {
        await this.#idleInFallback(stop);
        continue;
      }
      try {
        await this.#fetchShape(plan, stop);
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
      let response: Response;
      try {
        const init = { headers, signal: controller.signal };
        response = await fetchWithBackoff(this.#fetchClient, url, init, this.#backoff);
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
      const reply = await readShapeResponse(response, url.toString(), plan.live);
      const { messages, ...meta } = reply;
      const event = { type: 'response', request: plan, ...meta, now: Date.now() } as const;
      const next = transition(this.#state, event, this.#config);
      if (next.discard) return this.#setState(next.state);
      // Parsed before the state moves on: a value that fails to parse leaves the offset as it was.
      const schema = reply.schema ?? currentSchema(this.#state);
      if (!schema && messages.some((message) => 'key' in message))
        throw new MissingHeadersError(url.toString(), [HEADERS.schema]);
      await this.#commit(next, this.#parser.parseMessages(messages, schema ?? {}));
    } finally {
      stop.removeEventListener('abort', onStop);
      this.#request = undefined;
    }
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
    this.#unwatchStatus ??= watchServerStatus(this.#statusUrl, this.#fetchClient, {
      intervalMs: this.#statusPollIntervalMs,
      onStatus: (status) => this.#dispatch({ type: 'status', status }),
    });
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
