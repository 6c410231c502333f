import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  createInitialState,
  currentPosition,
  fallbackCacheBuster,
  isUpToDate,
  nextRequest,
  transition,
  type FallbackState,
  type LiveState,
  type LogPosition,
  type Mode,
  type RequestContext,
  type ResponseEvent,
  type StreamEvent,
  type StreamState,
  type SyncingState,
  type Transition,
} from './shape-stream-state.js';

// One case per row of client/SPEC.md (T: transitions, Q: requests); the last tests check that the
// rows and the cases match and that every state met every kind of event.

const SPEC = readFileSync(new URL('../SPEC.md', import.meta.url), 'utf8');
const specIds = [...SPEC.matchAll(/^\|\s*([TQ]\d+)\s*\|/gm)].map((match) => match[1] ?? '');

const testedIds = new Set<string>();
const met = new Set<string>();

function row(id: string, name: string, body: () => void): void {
  testedIds.add(id);
  test(`${id}: ${name}`, body);
}

const FULL = { refreshInFallback: true };
const CHANGES_ONLY = { refreshInFallback: false };

function step(state: StreamState, event: StreamEvent, config = FULL): Transition {
  met.add(`${state.kind} × ${event.type}`);
  return transition(state, event, config);
}

const schema = { id: { type: 'int4', pk_index: 0 } };
const position = (offset: LogPosition['offset'] = '100_2'): LogPosition => ({
  handle: 'H',
  offset,
  schema,
  cursor: '7',
});
const initial = () => createInitialState({});
const syncing = (mode: Mode = 'live'): SyncingState => ({
  kind: 'syncing',
  position: position(),
  mode,
});
const live = (): LiveState => ({
  kind: 'live',
  position: position(),
  mode: 'live',
  lastSyncedAt: 1,
});
/** In fallback after a live log (resume at `position()`), or never live (`resume` null). */
const fallback = (from: LogPosition | null = position()): FallbackState => ({
  kind: 'fallback',
  mode: 'fallback',
  lastSyncedAt: 1,
  resume: from ?? undefined,
  snapshot: from ? undefined : { handle: 'F-fallback-1', offset: '0_inf' },
  refreshDue: false,
  refreshedAt: 1,
});

/** A 200 response; by default a live, up-to-date answer to a catch-up request. */
const response = (overrides: Partial<ResponseEvent> = {}): ResponseEvent => ({
  type: 'response',
  request: { offset: '100_2', handle: 'H', live: false },
  handle: 'H',
  offset: '200_4',
  fallbackMode: false,
  upToDate: true,
  now: 50,
  ...overrides,
});
const LIVE_DONE = response();
const LIVE_MORE = response({ upToDate: false });
const FALLBACK_DONE = response({ fallbackMode: true });
const FALLBACK_MORE = response({ fallbackMode: true, upToDate: false });

const context = (overrides: Partial<RequestContext> = {}): RequestContext => ({
  subscribe: true,
  longPoll: true,
  now: 10_000,
  refreshIntervalMs: 1_000,
  ...overrides,
});

const resumedFrom = (event: ResponseEvent): LogPosition => ({
  handle: event.handle,
  offset: event.offset,
  schema,
  cursor: '7',
});

row('T1', 'initial + live up-to-date → live, mode known', () => {
  const { state, modeChanged } = step(initial(), response({ schema }));
  assert.equal(state.kind, 'live');
  assert.equal(modeChanged, 'live');
  assert.deepEqual(currentPosition(state), { handle: 'H', offset: '200_4', schema, cursor: '' });
  assert.equal(state.lastSyncedAt, 50);
  assert.ok(isUpToDate(state));
});

row('T2', 'initial + live, more → syncing', () => {
  const { state, modeChanged } = step(initial(), response({ upToDate: false, schema }));
  assert.deepEqual(state, {
    kind: 'syncing',
    position: { handle: 'H', offset: '200_4', schema, cursor: '' },
    mode: 'live',
    lastSyncedAt: undefined,
  });
  assert.equal(modeChanged, 'live');
  assert.ok(!isUpToDate(state));
});

row('T3', 'initial + fallback snapshot (offset -1) → fallback without resume', () => {
  const snapshot = response({
    request: { offset: '-1', live: false },
    handle: 'F-fallback-2',
    offset: '0_inf',
    fallbackMode: true,
    schema,
  });
  const { state, modeChanged, mustRefetch } = step(initial(), snapshot);
  assert.deepEqual(state, {
    kind: 'fallback',
    mode: 'fallback',
    lastSyncedAt: 50,
    resume: undefined,
    snapshot: { handle: 'F-fallback-2', offset: '0_inf' },
    refreshDue: false,
    refreshedAt: 50,
  });
  assert.equal(modeChanged, 'fallback');
  assert.equal(mustRefetch, undefined, 'nothing to clear yet');
  assert.ok(isUpToDate(state));
});

row('T4', 'initial + fallback up-to-date on a log (offset now) → fallback, resume there', () => {
  const start = createInitialState({ offset: 'now' });
  const end = response({
    request: { offset: 'now', live: false },
    fallbackMode: true,
    schema,
    cursor: '9',
  });
  const { state, modeChanged } = step(start, end);
  assert.equal(state.kind, 'fallback');
  assert.equal(modeChanged, 'fallback');
  assert.deepEqual(state.kind === 'fallback' && state.resume, { ...resumedFrom(end), cursor: '9' });
  assert.equal(state.kind === 'fallback' && state.refreshDue, true);
  // A changes_only log's snapshot is empty: no refresh.
  const quiet = step(start, end, CHANGES_ONLY).state;
  assert.equal(quiet.kind === 'fallback' && quiet.refreshDue, false);
});

row('T5', 'initial + fallback, more → syncing in fallback mode', () => {
  const { state, modeChanged } = step(initial(), response({ fallbackMode: true, upToDate: false }));
  assert.equal(state.kind, 'syncing');
  assert.equal(state.mode, 'fallback');
  assert.equal(modeChanged, 'fallback');
});

row('T6', 'syncing + live up-to-date → live; back from fallback mode', () => {
  const { state, modeChanged } = step(syncing(), LIVE_DONE);
  assert.deepEqual(state, {
    kind: 'live',
    position: resumedFrom(LIVE_DONE),
    mode: 'live',
    lastSyncedAt: 50,
  });
  assert.equal(modeChanged, undefined);
  assert.equal(step(syncing('fallback'), LIVE_DONE).modeChanged, 'live');
});

row('T7', 'syncing + live, more → syncing further on', () => {
  const { state, modeChanged } = step(syncing(), LIVE_MORE);
  assert.deepEqual(state, {
    kind: 'syncing',
    position: resumedFrom(LIVE_MORE),
    mode: 'live',
    lastSyncedAt: undefined,
  });
  assert.equal(modeChanged, undefined);
});

row('T8', 'syncing + fallback up-to-date → fallback, resume at the log end, refresh due', () => {
  const { state, modeChanged } = step(syncing(), FALLBACK_DONE);
  assert.equal(state.kind, 'fallback');
  assert.equal(modeChanged, 'fallback');
  assert.deepEqual(state.kind === 'fallback' && state.resume, resumedFrom(FALLBACK_DONE));
  assert.equal(state.kind === 'fallback' && state.refreshDue, true);
  assert.equal(step(syncing('fallback'), FALLBACK_DONE).modeChanged, undefined);
});

row('T9', 'syncing + fallback, more → syncing in fallback mode', () => {
  const { state, modeChanged } = step(syncing(), FALLBACK_MORE);
  assert.deepEqual(state, {
    kind: 'syncing',
    position: resumedFrom(FALLBACK_MORE),
    mode: 'fallback',
    lastSyncedAt: undefined,
  });
  assert.equal(modeChanged, 'fallback');
});

row('T10', 'live + live up-to-date → live, cursor and schema kept when not resent', () => {
  const longPoll = response({
    request: { offset: '100_2', handle: 'H', live: true, cursor: '7' },
    cursor: '8',
  });
  const { state, modeChanged } = step(live(), longPoll);
  assert.deepEqual(state, {
    kind: 'live',
    position: { ...resumedFrom(longPoll), cursor: '8' },
    mode: 'live',
    lastSyncedAt: 50,
  });
  assert.equal(modeChanged, undefined);
});

row('T11', 'live + live, more → syncing (catch up before long-polling again)', () => {
  const { state } = step(live(), LIVE_MORE);
  assert.equal(state.kind, 'syncing');
  assert.equal(state.lastSyncedAt, 1);
  assert.ok(!isUpToDate(state));
});

row('T12', 'live + fallback up-to-date → fallback, resume there, refresh due', () => {
  const { state, modeChanged } = step(live(), FALLBACK_DONE);
  assert.deepEqual(state, {
    kind: 'fallback',
    mode: 'fallback',
    lastSyncedAt: 50,
    resume: resumedFrom(FALLBACK_DONE),
    snapshot: undefined,
    refreshDue: true,
    refreshedAt: 50,
  });
  assert.equal(modeChanged, 'fallback');
});

row('T13', 'live + fallback, more → syncing in fallback mode', () => {
  const { state, modeChanged } = step(live(), FALLBACK_MORE);
  assert.equal(state.kind, 'syncing');
  assert.equal(state.mode, 'fallback');
  assert.equal(modeChanged, 'fallback');
});

row('T14', 'fallback + refresh answered in fallback → snapshot replaced, resume kept', () => {
  const from = { ...fallback(), refreshDue: true };
  const refresh = response({
    request: { offset: '-1', live: false, cacheBuster: 'x' },
    handle: 'F-fallback-3',
    offset: '0_inf',
    fallbackMode: true,
    now: 99,
  });
  const { state, mustRefetch, discard, modeChanged } = step(from, refresh);
  assert.deepEqual(state, {
    ...from,
    snapshot: { handle: 'F-fallback-3', offset: '0_inf' },
    refreshDue: false,
    refreshedAt: 99,
    lastSyncedAt: 99,
  });
  assert.equal(mustRefetch, 'fallback-refresh');
  assert.equal(discard, undefined);
  assert.equal(modeChanged, undefined);
  assert.deepEqual(
    currentPosition(state),
    position(),
    'the live position is what the rows continue',
  );
});

row('T15', 'fallback + refresh answered live or incomplete → body dropped, no refresh loop', () => {
  const from = { ...fallback(), refreshDue: true };
  for (const answer of [response({ upToDate: false }), response(), FALLBACK_MORE]) {
    const { state, discard, mustRefetch } = step(from, answer);
    assert.deepEqual(state, { ...from, refreshDue: false, refreshedAt: 50 });
    assert.equal(discard, true);
    assert.equal(mustRefetch, undefined);
  }
});

row('T16', 'any state + must-refetch → initial at -1 with the new handle', () => {
  for (const from of [initial(), syncing(), live(), fallback()]) {
    const { state, mustRefetch } = step(from, {
      type: 'must-refetch',
      handle: 'H2',
      cacheBuster: 'cb',
    });
    assert.deepEqual(state, {
      kind: 'initial',
      offset: '-1',
      handle: 'H2',
      cacheBuster: 'cb',
      mode: from.mode,
      lastSyncedAt: from.lastSyncedAt,
    });
    assert.equal(mustRefetch, 'refetch');
  }
});

row('T17', 'fallback with a live position + status live → syncing from that position', () => {
  const { state, mustRefetch } = step(fallback(), { type: 'status', status: 'live' });
  assert.deepEqual(state, {
    kind: 'syncing',
    position: position(),
    mode: 'fallback',
    lastSyncedAt: 1,
  });
  assert.equal(mustRefetch, undefined, 'no refetch: the log continues');
});

row('T18', 'fallback never live + status live → initial at -1, rows cleared', () => {
  const { state, mustRefetch } = step(fallback(null), { type: 'status', status: 'live' });
  assert.deepEqual(state, { kind: 'initial', offset: '-1', mode: 'fallback', lastSyncedAt: 1 });
  assert.equal(mustRefetch, 'refetch');
});

row('T19', 'fallback + status not live → unchanged', () => {
  for (const status of ['fallback', 'starting', 'unavailable'] as const) {
    const from = fallback();
    assert.deepEqual(step(from, { type: 'status', status }), { state: from });
  }
});

row('T20', 'not in fallback + status → unchanged', () => {
  for (const from of [initial(), syncing(), live()]) {
    assert.deepEqual(step(from, { type: 'status', status: 'live' }), { state: from });
    assert.deepEqual(step(from, { type: 'status', status: 'fallback' }), { state: from });
  }
});

row('T21', 'fallback + refresh-due → refresh due (never for changes_only)', () => {
  const from = fallback();
  assert.deepEqual(step(from, { type: 'refresh-due' }).state, { ...from, refreshDue: true });
  assert.deepEqual(step(from, { type: 'refresh-due' }, CHANGES_ONLY).state, from);
});

row('T22', 'not in fallback + refresh-due → unchanged', () => {
  for (const from of [initial(), syncing(), live()]) {
    assert.deepEqual(step(from, { type: 'refresh-due' }), { state: from });
  }
});

row('Q1', 'initial asks from its offset, with handle and cache-buster when set', () => {
  assert.deepEqual(nextRequest(initial(), context()), {
    offset: '-1',
    handle: undefined,
    live: false,
    cacheBuster: undefined,
  });
  const afterRefetch = step(live(), {
    type: 'must-refetch',
    handle: 'H2',
    cacheBuster: 'cb',
  }).state;
  assert.deepEqual(nextRequest(afterRefetch, context()), {
    offset: '-1',
    handle: 'H2',
    live: false,
    cacheBuster: 'cb',
  });
  const stored = createInitialState({ offset: '5_0', handle: 'H' });
  assert.deepEqual(nextRequest(stored, context({ subscribe: false })), {
    offset: '5_0',
    handle: 'H',
    live: false,
    cacheBuster: undefined,
  });
});

row('Q2', 'syncing asks for the rest of its log, never long-polls', () => {
  assert.deepEqual(nextRequest(syncing(), context()), {
    offset: '100_2',
    handle: 'H',
    live: false,
  });
});

row(
  'Q3',
  'live long-polls with its cursor; catches up while refreshing; done without subscribe',
  () => {
    const request = { offset: '100_2', handle: 'H', cursor: '7' };
    assert.deepEqual(nextRequest(live(), context()), { ...request, live: true });
    assert.deepEqual(nextRequest(live(), context({ longPoll: false })), {
      ...request,
      live: false,
    });
    assert.equal(nextRequest(live(), context({ subscribe: false })), 'done');
  },
);

row('Q4', 'fallback refreshes with -1, no handle and a cache-buster; else waits', () => {
  assert.equal(nextRequest(fallback(), context()), 'wait');
  assert.equal(
    nextRequest({ ...fallback(), refreshDue: true }, context({ subscribe: false })),
    'done',
  );
  assert.deepEqual(nextRequest({ ...fallback(), refreshDue: true }, context()), {
    offset: '-1',
    live: false,
    cacheBuster: 'fallback_H_100_2_10',
  });
  assert.deepEqual(nextRequest({ ...fallback(null), refreshDue: true }, context()), {
    offset: '-1',
    live: false,
    cacheBuster: 'fallback_none_10',
  });
});

test('fallback cache-busters: shared within a refresh window and position, new across them', () => {
  const at = (now: number, offset: LogPosition['offset'] = '100_2') =>
    fallbackCacheBuster(position(offset), now, 30_000);
  assert.equal(at(60_000), at(89_999));
  assert.notEqual(at(89_999), at(90_000));
  assert.notEqual(at(60_000), at(60_000, '100_4'));
});

test('every row of client/SPEC.md has a case here, and every case a row', () => {
  assert.deepEqual([...testedIds].sort(), [...new Set(specIds)].sort());
});

test('every state met every kind of event', () => {
  const kinds = ['initial', 'syncing', 'live', 'fallback'];
  const events = ['response', 'must-refetch', 'status', 'refresh-due'];
  const expected = kinds.flatMap((kind) => events.map((event) => `${kind} × ${event}`));
  assert.deepEqual([...met].sort(), expected.sort());
});
