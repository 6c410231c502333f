/*
 * The shape stream's state machine (client/SPEC.md has the transition table). Pure: it reads
 * nothing but its arguments, starts no timer and makes no request. `ShapeStream` feeds it events
 * (responses, 409s, status polls, refresh timers) and does what the results say.
 *
 *   initial ──response──► syncing ──up-to-date──► live ◄────────────────┐
 *      ▲                     │  ▲                  │                    │
 *      │            up-to-date  │ not up-to-date   │ fallback header    │ no header
 *      │          with header│  └──────────────────┤                    │
 *      │                     ▼                     ▼                    │
 *      │                  fallback ──status live──► syncing (resuming) ─┘
 *      │                   ▲    │
 *      │                   └────┘ refresh-due, refresh response
 *      └──── must-refetch (409), from any state
 */
import type { ServerState } from '@sluice/protocol';
import type { Offset } from './messages.js';
import type { Schema } from './schema.js';

/** What the server last said about itself on a shape response (`electric-fallback-mode`). */
export type Mode = 'live' | 'fallback';

/** A place in a live shape log: enough to continue it. */
export interface LogPosition {
  readonly handle: string;
  readonly offset: Offset;
  readonly schema: Schema;
  /** The last `electric-cursor`, echoed on live requests (empty before the first). */
  readonly cursor: string;
}

interface Common {
  /** Unknown until the first response. */
  readonly mode?: Mode;
  /** When the data was last complete (an up-to-date), in ms since the epoch. */
  readonly lastSyncedAt?: number;
}

/** Before the first response from a starting point: the options' offset, or -1 after a 409. */
export interface InitialState extends Common {
  readonly kind: 'initial';
  readonly offset: Offset;
  readonly handle?: string;
  /** After a 409: a URL no cache has answered before. */
  readonly cacheBuster?: string;
}

/** Reading a log up to its end (snapshot chunks, catch-up, resuming after fallback). */
export interface SyncingState extends Common {
  readonly kind: 'syncing';
  readonly position: LogPosition;
}

/** Up to date with a live server: long-polls for changes. */
export interface LiveState extends Common {
  readonly kind: 'live';
  readonly mode: 'live';
  readonly position: LogPosition;
  readonly lastSyncedAt: number;
}

/**
 * The server is in fallback (docs/protocol.md §7): no long-polls; the rows come from fallback
 * answers; the status endpoint is polled until it reads live.
 */
export interface FallbackState extends Common {
  readonly kind: 'fallback';
  readonly mode: 'fallback';
  readonly lastSyncedAt: number;
  /** The live log position to continue from once live again; none when never live. */
  readonly resume?: LogPosition;
  /** The fallback answer the rows were last replaced with. */
  readonly snapshot?: { readonly handle: string; readonly offset: Offset };
  /** Fresh fallback rows are to be fetched now. */
  readonly refreshDue: boolean;
  /** When fallback rows were last asked for (or fallback entered): the refresh timer's base. */
  readonly refreshedAt: number;
}

export type StreamState = InitialState | SyncingState | LiveState | FallbackState;

/** The request the state asks for next. */
export interface RequestPlan {
  readonly offset: Offset;
  readonly handle?: string;
  readonly live: boolean;
  readonly cursor?: string;
  readonly cacheBuster?: string;
}

/** A 200 response: its headers, and whether its body ends with `up-to-date`. */
export interface ResponseEvent {
  readonly type: 'response';
  readonly request: RequestPlan;
  readonly handle: string;
  readonly offset: Offset;
  readonly cursor?: string;
  /** Present on non-live responses. */
  readonly schema?: Schema;
  readonly fallbackMode: boolean;
  readonly upToDate: boolean;
  readonly now: number;
}

export type StreamEvent =
  | ResponseEvent
  /** A 409: the handle is gone; start again from -1 (with the new handle, when one was named). */
  | { readonly type: 'must-refetch'; readonly handle?: string; readonly cacheBuster: string }
  /** What `/v1/status` said. */
  | { readonly type: 'status'; readonly status: ServerState }
  /** The fallback refresh interval has passed (or a refresh was asked for). */
  | { readonly type: 'refresh-due' };

/**
 * A synthetic `must-refetch` to publish before the response's messages (if any): `refetch` when
 * the data is invalid (a 409, or back to live with no position to continue), `fallback-refresh`
 * when a fallback answer replaces the rows.
 */
export type MustRefetchReason = 'refetch' | 'fallback-refresh';

export interface Transition {
  readonly state: StreamState;
  readonly mustRefetch?: MustRefetchReason;
  /** The response's body is not the data the state expects and must be dropped unread. */
  readonly discard?: boolean;
  /** The mode changed, or became known. */
  readonly modeChanged?: Mode;
}

export interface MachineConfig {
  /** Whether fallback answers replace the rows (not for `changes_only` logs, whose are empty). */
  readonly refreshInFallback: boolean;
}

export interface RequestContext {
  /** False stops after the first up-to-date (the `subscribe` option). */
  readonly subscribe: boolean;
  /** False asks a live state for a catch-up request instead of a long-poll. */
  readonly longPoll: boolean;
  readonly now: number;
  readonly refreshIntervalMs: number;
}

export function createInitialState(options: { offset?: Offset; handle?: string }): InitialState {
  return { kind: 'initial', offset: options.offset ?? '-1', handle: options.handle };
}

export function transition(
  state: StreamState,
  event: StreamEvent,
  config: MachineConfig,
): Transition {
  switch (event.type) {
    case 'must-refetch':
      return {
        state: {
          kind: 'initial',
          offset: '-1',
          handle: event.handle,
          cacheBuster: event.cacheBuster,
          mode: state.mode,
          lastSyncedAt: state.lastSyncedAt,
        },
        mustRefetch: 'refetch',
      };
    case 'status':
      return state.kind === 'fallback' && event.status === 'live' ? resume(state) : { state };
    case 'refresh-due':
      return state.kind === 'fallback' && config.refreshInFallback
        ? { state: { ...state, refreshDue: true } }
        : { state };
    case 'response':
      return state.kind === 'fallback'
        ? fallbackRefreshed(state, event)
        : followed(state, event, config);
  }
}

/** Back to live: continue the remembered log, or start over when there is none. */
function resume(state: FallbackState): Transition {
  const { mode, lastSyncedAt } = state;
  if (state.resume)
    return { state: { kind: 'syncing', position: state.resume, mode, lastSyncedAt } };
  return { state: { kind: 'initial', offset: '-1', mode, lastSyncedAt }, mustRefetch: 'refetch' };
}

/** A response while following a log (initial, syncing, live). */
function followed(
  state: InitialState | SyncingState | LiveState,
  event: ResponseEvent,
  config: MachineConfig,
): Transition {
  const previous = state.kind === 'initial' ? undefined : state.position;
  const mode: Mode = event.fallbackMode ? 'fallback' : 'live';
  const modeChanged = mode === state.mode ? undefined : mode;
  const position: LogPosition = {
    handle: event.handle,
    offset: event.offset,
    schema: event.schema ?? previous?.schema ?? {},
    cursor: event.cursor ?? previous?.cursor ?? '',
  };
  if (!event.upToDate) {
    const next: SyncingState = {
      kind: 'syncing',
      position,
      mode,
      lastSyncedAt: state.lastSyncedAt,
    };
    return { state: next, modeChanged };
  }
  if (mode === 'live') {
    return { state: { kind: 'live', position, mode, lastSyncedAt: event.now }, modeChanged };
  }
  // Up to date in fallback. An `offset=-1` answer that is complete at once is a fallback
  // answer under a handle of its own (a live log's first chunk never ends up-to-date, §3);
  // anything else is the live log served read-only, whose end is the place to resume from.
  const isSnapshot = event.request.offset === '-1';
  const next: FallbackState = {
    kind: 'fallback',
    mode,
    lastSyncedAt: event.now,
    resume: isSnapshot ? undefined : position,
    snapshot: isSnapshot ? { handle: event.handle, offset: event.offset } : undefined,
    // Rows from the read-only log are as old as the outage: refresh them at once.
    refreshDue: !isSnapshot && config.refreshInFallback,
    refreshedAt: event.now,
  };
  return { state: next, modeChanged };
}

/** The answer to a fallback refresh (`offset=-1`, no handle). */
function fallbackRefreshed(state: FallbackState, event: ResponseEvent): Transition {
  if (!event.fallbackMode || !event.upToDate) {
    // The server is live again (this is its live snapshot's first chunk). Only the status poll
    // takes the stream back: a cache could hand this response out again later, long after
    // the server went back to fallback, and following it would loop.
    return { state: { ...state, refreshDue: false, refreshedAt: event.now }, discard: true };
  }
  const next: FallbackState = {
    ...state,
    snapshot: { handle: event.handle, offset: event.offset },
    refreshDue: false,
    refreshedAt: event.now,
    lastSyncedAt: event.now,
  };
  return { state: next, mustRefetch: 'fallback-refresh' };
}

/** The next request, `wait` (fallback, nothing due) or `done` (`subscribe: false`, up to date). */
export function nextRequest(
  state: StreamState,
  context: RequestContext,
): RequestPlan | 'wait' | 'done' {
  switch (state.kind) {
    case 'initial':
      return {
        offset: state.offset,
        handle: state.handle,
        live: false,
        cacheBuster: state.cacheBuster,
      };
    case 'syncing':
      return { offset: state.position.offset, handle: state.position.handle, live: false };
    case 'live': {
      if (!context.subscribe) return 'done';
      const { offset, handle, cursor } = state.position;
      return { offset, handle, cursor, live: context.longPoll };
    }
    case 'fallback':
      if (!context.subscribe) return 'done';
      if (!state.refreshDue) return 'wait';
      return {
        offset: '-1',
        live: false,
        cacheBuster: fallbackCacheBuster(state.resume, context.now, context.refreshIntervalMs),
      };
  }
}

/**
 * The cache-buster of a fallback refresh. Without one the URL would be the shape's first request,
 * which caches keep for a week with live data in it. It names the live position the rows will be
 * resumed from, so a cached fallback answer is never older than that position (the replay onto
 * it is then correct, SPEC.md), and the refresh window, so each refresh gets fresh rows while
 * streams at the same position share one URL (and one CDN entry).
 */
export function fallbackCacheBuster(
  resumeFrom: LogPosition | undefined,
  now: number,
  refreshIntervalMs: number,
): string {
  const window = Math.floor(now / refreshIntervalMs);
  const position = resumeFrom ? `${resumeFrom.handle}_${resumeFrom.offset}` : 'none';
  return `fallback_${position}_${window}`;
}

/** The handle and offset the rows correspond to (a remembered live one in fallback, if any). */
export function currentPosition(state: StreamState): { handle?: string; offset: Offset } {
  switch (state.kind) {
    case 'initial':
      return { handle: state.handle, offset: state.offset };
    case 'syncing':
    case 'live':
      return state.position;
    case 'fallback':
      return state.resume ?? state.snapshot ?? { offset: '-1' };
  }
}

/** The schema to parse a response with, when it brings none of its own (live responses). */
export function currentSchema(state: StreamState): Schema | undefined {
  switch (state.kind) {
    case 'initial':
      return undefined;
    case 'syncing':
    case 'live':
      return state.position.schema;
    case 'fallback':
      return state.resume?.schema;
  }
}

/** Complete data: live, or in fallback with fallback rows or the read-only log's end. */
export function isUpToDate(state: StreamState): boolean {
  return state.kind === 'live' || state.kind === 'fallback';
}
