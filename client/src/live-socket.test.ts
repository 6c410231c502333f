import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  HEADERS,
  PARAMS,
  PATHS,
  WS_CLOSE_CODES,
  WS_FRAME_TYPES,
  type ServerState,
  type WsServerFrame,
} from '@sluice/protocol';
import { FetchError, InvalidShapeOptionsError } from './errors.js';
import { acquireLiveSocket, type SubscriptionEvent, type WebSocketLike } from './live-socket.js';
import type { Message } from './messages.js';
import { ShapeStream } from './shape-stream.js';
import type { Mode } from './shape-stream-state.js';
import { Shape } from './shape.js';

// The WebSocket live transport on the client: the shared socket (live-socket.ts) and ShapeStream
// following shapes over it, against a server played in-process (a fake WebSocket class and a
// fetch client). test/e2e/ws-client.test.ts runs the same against Sluice.

const ORIGIN = 'http://sluice.invalid';
const SHAPE_URL = `${ORIGIN}${PATHS.shape}`;
const SOCKET_URL = `ws://sluice.invalid${PATHS.ws}`;
const SCHEMA = { id: { type: 'int4', pk_index: 0, not_null: true }, v: { type: 'int4' } };
const BACKOFF = { initialDelay: 5, maxDelay: 20, multiplier: 2 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const insert = (id: number, v = 0) => ({
  key: `"public"."items"/"${id}"`,
  value: { id: String(id), v: String(v) },
  headers: { operation: 'insert' },
});
const remove = (id: number) => ({
  key: `"public"."items"/"${id}"`,
  value: { id: String(id) },
  headers: { operation: 'delete' },
});
const UP_TO_DATE = { headers: { control: 'up-to-date', global_last_seen_lsn: '1' } };

async function until(what: string, done: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await sleep(2);
  }
}

interface SentFrame {
  type: string;
  id: string;
  params?: Record<string, unknown>;
  handle?: string;
  offset?: string;
}

/** A WebSocket class of its own (so tests share no socket), whose sockets the test drives. */
function fakeWebSocket() {
  const sockets: FakeSocket[] = [];
  class FakeSocket implements WebSocketLike {
    readyState = 0;
    onopen: ((event: never) => void) | null = null;
    onmessage: ((event: never) => void) | null = null;
    onclose: ((event: never) => void) | null = null;
    onerror: ((event: never) => void) | null = null;
    readonly sent: SentFrame[] = [];
    closedWith: number | undefined;
    constructor(readonly url: string) {
      sockets.push(this);
    }
    send(data: string): void {
      this.sent.push(JSON.parse(data) as SentFrame);
    }
    close(code?: number): void {
      this.closedWith = code;
      this.readyState = 3;
    }
    /** The server accepts the upgrade, and pushes its status as it does at every open. */
    accept(status?: ServerState): void {
      this.readyState = 1;
      this.onopen?.({} as never);
      if (status) this.push({ type: WS_FRAME_TYPES.status, status: { status } });
    }
    /** The connection ends (a refused upgrade when it never opened). */
    drop(): void {
      this.readyState = 3;
      this.onclose?.({ code: 1006 } as never);
    }
    push(frame: WsServerFrame | Record<string, unknown>): void {
      this.onmessage?.({ data: JSON.stringify(frame) } as never);
    }
    subscriptions(): SentFrame[] {
      return this.sent.filter((frame) => frame.type === WS_FRAME_TYPES.subscribe);
    }
  }
  return { WebSocket: FakeSocket, sockets };
}

function messagesFrame(id: string, offset: string, messages: object[], schema?: object) {
  return { type: WS_FRAME_TYPES.messages, id, handle: 'H', offset, messages, schema };
}

interface Answer {
  messages?: object[];
  handle?: string;
  offset?: string;
  fallback?: boolean;
}

/** Waits for the request's abort, as a held long-poll does. */
function held(init: RequestInit | undefined): Promise<Response> {
  return new Promise((_, reject) => {
    init?.signal?.addEventListener('abort', () =>
      reject(new DOMException('aborted', 'AbortError')),
    );
  });
}

/** HTTP in-process: shape answers from `route`; `/v1/status` answers `status()`. */
function server(
  route: (url: URL, init: RequestInit | undefined) => Answer | Promise<Response>,
  status: () => string = () => 'live',
) {
  const shapes: URL[] = [];
  const statusPolls: URL[] = [];
  const fetchClient: typeof fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : input.toString());
    if (url.pathname === PATHS.status) {
      statusPolls.push(url);
      return Promise.resolve(new Response(JSON.stringify({ status: status() })));
    }
    shapes.push(url);
    const answer = route(url, init);
    if (answer instanceof Promise) return answer;
    const live = url.searchParams.get(PARAMS.live) === 'true';
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      [HEADERS.handle]: answer.handle ?? 'H',
      [HEADERS.offset]: answer.offset ?? '0_inf',
      ...(live ? { [HEADERS.cursor]: '42' } : { [HEADERS.schema]: JSON.stringify(SCHEMA) }),
      ...(answer.fallback ? { [HEADERS.fallbackMode]: 'true' } : {}),
    };
    return Promise.resolve(new Response(JSON.stringify(answer.messages ?? []), { headers }));
  };
  return { fetchClient, shapes, statusPolls };
}

const param = (url: URL | undefined, name: string) => url?.searchParams.get(name) ?? null;
const isLive = (url: URL) => param(url, PARAMS.live) === 'true';

/** Snapshot of rows 1 and 2, then up to date at 0_inf: what most tests start from. */
function snapshotThen(
  rest: (url: URL, init: RequestInit | undefined) => Answer | Promise<Response>,
) {
  return (url: URL, init: RequestInit | undefined) => {
    const offset = param(url, PARAMS.offset);
    if (offset === '-1') return { messages: [insert(1), insert(2)], offset: '0_0' };
    if (offset === '0_0') return { messages: [UP_TO_DATE] };
    return rest(url, init);
  };
}

test('one socket per URL and WebSocket class, counted by reference, closed by the last release', () => {
  const { WebSocket, sockets } = fakeWebSocket();
  const a = acquireLiveSocket(SOCKET_URL, WebSocket, BACKOFF);
  const b = acquireLiveSocket(SOCKET_URL, WebSocket, BACKOFF);
  const other = acquireLiveSocket(`${SOCKET_URL}?secret=x`, WebSocket, BACKOFF);
  assert.equal(a, b);
  assert.notEqual(a, other);
  assert.equal(sockets.length, 2);
  sockets[0]?.accept('live');
  a.release();
  assert.equal(sockets[0]?.closedWith, undefined, 'still held');
  b.release();
  assert.equal(sockets[0]?.closedWith, WS_CLOSE_CODES.normal);
  other.release();
  // A later acquire opens a new socket.
  const again = acquireLiveSocket(SOCKET_URL, WebSocket, BACKOFF);
  assert.notEqual(again, a);
  assert.equal(sockets.length, 3);
  again.release();
});

test('a socket that fails to upgrade or drops is retried with backoff; subscriptions hear it ended', async () => {
  const { WebSocket, sockets } = fakeWebSocket();
  const socket = acquireLiveSocket(SOCKET_URL, WebSocket, BACKOFF);
  let changes = 0;
  socket.onChange(() => changes++);
  sockets[0]?.drop();
  assert.equal(socket.upgradeFailed, true);
  assert.equal(socket.phase, 'waiting');
  await until('a second attempt', () => sockets.length === 2);
  sockets[1]?.accept('live');
  assert.equal(socket.phase, 'open');
  assert.equal(socket.upgradeFailed, false);
  const events: SubscriptionEvent[] = [];
  socket.subscribe({ params: { table: 'items' }, handle: 'H', offset: '0_inf' }, (e) =>
    events.push(e),
  );
  sockets[1]?.drop();
  assert.deepEqual(events, [{ type: 'ended' }]);
  assert.equal(socket.upgradeFailed, false, 'it did open: a drop, not a refused upgrade');
  await until('a reconnect', () => sockets.length === 3);
  assert.ok(changes >= 3);
  socket.release();
});

test('frames reach their subscription; must-refetch, error and a status other than live end it', () => {
  const { WebSocket, sockets } = fakeWebSocket();
  const socket = acquireLiveSocket(SOCKET_URL, WebSocket, BACKOFF);
  sockets[0]?.accept('live');
  const events = [[], [], []] as SubscriptionEvent[][];
  for (const list of events)
    socket.subscribe({ params: { table: 'items' }, handle: 'H', offset: '0_inf' }, (e) =>
      list.push(e),
    );
  const ids = sockets[0]?.subscriptions().map((frame) => frame.id) ?? [];
  assert.equal(new Set(ids).size, 3, 'ids are unique on the socket');
  sockets[0]?.push(messagesFrame(ids[0] ?? '', '5_0', [UP_TO_DATE]));
  sockets[0]?.push({ type: WS_FRAME_TYPES.mustRefetch, id: ids[1], handle: 'H2' });
  sockets[0]?.push('not an object' as unknown as WsServerFrame);
  sockets[0]?.push({ type: 'from the future', id: ids[0] });
  assert.equal(events[0]?.[0]?.type, 'messages');
  assert.deepEqual(events[1], [{ type: 'must-refetch', handle: 'H2' }]);
  sockets[0]?.push({ type: WS_FRAME_TYPES.status, status: { status: 'fallback' } });
  assert.deepEqual(events[0]?.slice(1), [{ type: 'ended' }]);
  assert.deepEqual(events[1]?.length, 1, 'an ended subscription hears nothing more');
  assert.deepEqual(events[2], [{ type: 'ended' }]);
  assert.equal(socket.status, 'fallback');
  // A subscribe while the server is not live (or the socket not open) ends at once, unsent.
  const late: SubscriptionEvent[] = [];
  socket.subscribe({ params: { table: 'items' }, handle: 'H', offset: '0_inf' }, (e) =>
    late.push(e),
  );
  assert.deepEqual(late, [{ type: 'ended' }]);
  assert.equal(sockets[0]?.subscriptions().length, 3);
  socket.release();
});

test('status watchers: pushed while the socket is open, polled only while it is not', async () => {
  const { WebSocket, sockets } = fakeWebSocket();
  const socket = acquireLiveSocket(SOCKET_URL, WebSocket, BACKOFF);
  const heard: ServerState[] = [];
  let polling = 0;
  const unwatch = socket.watchStatus({
    onStatus: (status) => heard.push(status),
    poll: () => {
      polling++;
      return () => polling--;
    },
  });
  assert.equal(polling, 1, 'connecting: polled');
  sockets[0]?.accept('fallback');
  assert.equal(polling, 0, 'open: not polled');
  sockets[0]?.push({ type: WS_FRAME_TYPES.status, status: { status: 'live' } });
  assert.deepEqual(heard, ['fallback', 'live']);
  sockets[0]?.drop();
  assert.equal(polling, 1, 'closed: polled again');
  unwatch();
  assert.equal(polling, 0);
  // A watcher that arrives while the socket is open hears the current state at once.
  await until('reconnected', () => sockets.length === 2);
  sockets[1]?.accept('live');
  const late: ServerState[] = [];
  socket.watchStatus({ onStatus: (status) => late.push(status), poll: () => () => undefined })();
  assert.deepEqual(late, ['live']);
  socket.release();
});

test('options: liveTransport is checked; websocket needs a WebSocket; long-poll never opens one', async () => {
  assert.throws(
    () => new ShapeStream({ url: SHAPE_URL, liveTransport: 'carrier-pigeon' as 'auto' }),
    InvalidShapeOptionsError,
  );
  // Node 20 has no global WebSocket (the tests run there).
  if (!('WebSocket' in globalThis)) {
    assert.throws(
      () => new ShapeStream({ url: SHAPE_URL, liveTransport: 'websocket' }),
      InvalidShapeOptionsError,
    );
  }
  const { WebSocket, sockets } = fakeWebSocket();
  let polls = 0;
  const { fetchClient } = server(
    snapshotThen((url, init) =>
      isLive(url) && polls++ > 0 ? held(init) : { messages: [UP_TO_DATE] },
    ),
  );
  const controller = new AbortController();
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items' },
    fetchClient,
    liveTransport: 'long-poll',
    webSocket: WebSocket,
    signal: controller.signal,
  });
  stream.subscribe(() => undefined);
  await until('long-polling', () => polls >= 2);
  assert.equal(sockets.length, 0);
  controller.abort();
});

test('live over the socket: subscribes after the snapshot, frames become messages and rows, no long-poll', async () => {
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetchClient, shapes } = server(
    snapshotThen(() => assert.fail('no request after up-to-date')),
  );
  const controller = new AbortController();
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items', where: 'v >= $1', params: ['0'], columns: ['id', 'v'], secret: 's3' },
    fetchClient,
    webSocket: WebSocket,
    signal: controller.signal,
  });
  const shape = new Shape(stream);
  const batches: Message[][] = [];
  stream.subscribe((batch) => void batches.push(batch));
  await shape.rows;
  await until('a socket', () => sockets.length === 1);
  const socket = sockets[0];
  assert.ok(socket);
  assert.equal(socket.url, `${SOCKET_URL}?secret=s3`);
  socket.accept('live');
  await until('a subscribe', () => socket.subscriptions().length === 1);
  const subscribe = socket.subscriptions()[0];
  assert.deepEqual(subscribe, {
    type: 'subscribe',
    id: subscribe?.id,
    params: {
      table: 'items',
      where: 'v >= $1',
      params: { 1: '0' },
      columns: '"id","v"',
      log: 'full',
    },
    handle: 'H',
    offset: '0_inf',
  });
  const id = subscribe?.id ?? '';
  socket.push(messagesFrame(id, '0_inf', [UP_TO_DATE], SCHEMA));
  socket.push(messagesFrame(id, '7_2', [insert(3, 9), remove(1), UP_TO_DATE]));
  await until('the changes', () => shape.currentRows.length === 2 && stream.lastOffset === '7_2');
  assert.deepEqual(shape.currentRows, [
    { id: 2, v: 0 },
    { id: 3, v: 9 },
  ]);
  assert.ok(batches.some((b) => b.some((m) => 'key' in m && m.value.id === 3)));
  assert.equal(stream.isConnected(), true);
  assert.equal(shapes.filter(isLive).length, 0, 'no long-poll');
  controller.abort();
  await until('unsubscribed', () => socket.sent.some((f) => f.type === 'unsubscribe'));
  await until('closed by the last release', () => socket.closedWith === WS_CLOSE_CODES.normal);
});

test('several streams share the socket; a must-refetch frame is a 409: refetch over HTTP, then subscribe anew', async () => {
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetchClient, shapes } = server((url) => {
    const offset = param(url, PARAMS.offset);
    const handle = param(url, PARAMS.handle);
    if (offset === '-1' && handle === 'H2')
      return { messages: [insert(5)], offset: '0_0', handle: 'H2' };
    if (offset === '-1') return { messages: [insert(1)], offset: '0_0' };
    return { messages: [UP_TO_DATE], handle: handle ?? 'H' };
  });
  const controllers = [new AbortController(), new AbortController()];
  const streams = controllers.map(
    (controller, i) =>
      new ShapeStream({
        url: SHAPE_URL,
        params: { table: 'items', where: `id > ${i}` },
        fetchClient,
        webSocket: WebSocket,
        signal: controller.signal,
      }),
  );
  const shapes2 = streams.map((stream) => new Shape(stream));
  const messages: Message[] = [];
  streams[0]?.subscribe((batch) => void messages.push(...batch));
  await Promise.all(shapes2.map((shape) => shape.rows));
  await until('a socket', () => sockets.length === 1);
  const socket = sockets[0];
  assert.ok(socket);
  socket.accept('live');
  await until('two subscribes', () => socket.subscriptions().length === 2);
  assert.equal(sockets.length, 1, 'one socket for both streams');
  const first = socket.subscriptions().find((f) => f.params?.where === 'id > 0');
  socket.push({ type: WS_FRAME_TYPES.mustRefetch, id: first?.id, handle: 'H2' });
  await until('subscribed anew with H2', () =>
    socket.subscriptions().some((f) => f.handle === 'H2' && f.params?.where === 'id > 0'),
  );
  const refetch = shapes.find(
    (u) => param(u, PARAMS.handle) === 'H2' && param(u, PARAMS.offset) === '-1',
  );
  assert.ok(refetch?.searchParams.has(PARAMS.cacheBuster), 'the refetch carries a cache-buster');
  assert.ok(messages.some((m) => !('key' in m) && m.headers.control === 'must-refetch'));
  assert.deepEqual(shapes2[0]?.currentRows, [{ id: 5, v: 0 }]);
  assert.deepEqual(shapes2[1]?.currentRows, [{ id: 1, v: 0 }]);
  for (const controller of controllers) controller.abort();
  await until('closed', () => socket.closedWith === WS_CLOSE_CODES.normal);
});

test('pushed status: fallback at once (a catch-up, no long-poll, no polling while open); live resumes on the socket', async () => {
  const { WebSocket, sockets } = fakeWebSocket();
  let state = 'live';
  const { fetchClient, shapes, statusPolls } = server(
    snapshotThen((url, init) => {
      const fallback = state !== 'live';
      if (fallback && param(url, PARAMS.offset) === '-1') return held(init);
      if (!url.searchParams.has(PARAMS.handle))
        return { messages: [insert(1), UP_TO_DATE], handle: 'F-fallback-1', fallback };
      return { messages: [UP_TO_DATE], offset: param(url, PARAMS.offset) ?? '', fallback };
    }),
    () => state,
  );
  const controller = new AbortController();
  const modes: Mode[] = [];
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items' },
    fetchClient,
    webSocket: WebSocket,
    signal: controller.signal,
    statusPollIntervalMs: 5,
    fallbackRefreshIntervalMs: 60_000,
    onModeChange: (mode) => modes.push(mode),
  });
  stream.subscribe(() => undefined);
  await until('a socket', () => sockets.length === 1);
  const socket = sockets[0];
  assert.ok(socket);
  socket.accept('live');
  await until('subscribed', () => socket.subscriptions().length === 1);
  const id = socket.subscriptions()[0]?.id ?? '';
  socket.push(messagesFrame(id, '0_inf', [UP_TO_DATE], SCHEMA));
  socket.push(messagesFrame(id, '8_0', [insert(3), UP_TO_DATE]));
  await until('at 8_0', () => stream.lastOffset === '8_0');
  const before = shapes.length;

  state = 'fallback';
  socket.push({ type: WS_FRAME_TYPES.status, status: { status: 'fallback' } });
  await until('fallback', () => stream.mode === 'fallback');
  const catchUp = shapes[before];
  assert.equal(param(catchUp, PARAMS.offset), '8_0');
  assert.equal(param(catchUp, PARAMS.live), null, 'a catch-up, not a held long-poll');
  await sleep(50);
  assert.equal(statusPolls.length, 0, 'the open socket pushes the status: no polling');
  assert.equal(stream.lastOffset, '8_0', 'the live position is kept to resume from');

  state = 'live';
  socket.push({ type: WS_FRAME_TYPES.status, status: { status: 'live' } });
  await until('live', () => stream.mode === 'live');
  await until('subscribed again', () => socket.subscriptions().length === 2);
  assert.deepEqual(
    [socket.subscriptions()[1]?.handle, socket.subscriptions()[1]?.offset],
    ['H', '8_0'],
  );
  assert.deepEqual(modes, ['live', 'fallback', 'live']);
  assert.equal(statusPolls.length, 0);
  controller.abort();
});

test('auto: long-polls while the upgrade fails, and moves to the socket once it opens', async () => {
  const { WebSocket, sockets } = fakeWebSocket();
  let held1 = 0;
  const { fetchClient } = server(
    snapshotThen((url, init) => {
      if (!isLive(url)) return { messages: [UP_TO_DATE] };
      held1++;
      return held(init);
    }),
  );
  const controller = new AbortController();
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items' },
    fetchClient,
    webSocket: WebSocket,
    signal: controller.signal,
    backoffOptions: BACKOFF,
  });
  stream.subscribe(() => undefined);
  await until('a socket', () => sockets.length === 1);
  sockets[0]?.drop(); // refused (a proxy that blocks upgrades)
  await until('a long-poll', () => held1 === 1);
  await until('a second attempt', () => sockets.length === 2);
  sockets[1]?.accept('live');
  await until('subscribed', () => sockets[1]?.subscriptions().length === 1);
  assert.equal(held1, 1, 'the held long-poll gave way to the socket');
  controller.abort();
});

test('a dropped socket: reconnect, resubscribe from the last offset; an error frame is an HTTP error', async () => {
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetchClient } = server(snapshotThen(() => ({ messages: [UP_TO_DATE] })));
  const controller = new AbortController();
  const errors: Error[] = [];
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items' },
    fetchClient,
    webSocket: WebSocket,
    liveTransport: 'websocket',
    signal: controller.signal,
    backoffOptions: BACKOFF,
  });
  stream.subscribe(
    () => undefined,
    (error) => errors.push(error),
  );
  await until('a socket', () => sockets.length === 1);
  sockets[0]?.accept('live');
  await until('subscribed', () => sockets[0]?.subscriptions().length === 1);
  const first = sockets[0]?.subscriptions()[0]?.id ?? '';
  sockets[0]?.push(messagesFrame(first, '0_inf', [UP_TO_DATE], SCHEMA));
  sockets[0]?.push(messagesFrame(first, '9_0', [insert(4), UP_TO_DATE]));
  await until('at 9_0', () => stream.lastOffset === '9_0');
  sockets[0]?.drop();
  await until('reconnected', () => sockets.length === 2);
  const socket = sockets[1];
  assert.ok(socket);
  socket.accept('live');
  await until('resubscribed', () => socket.subscriptions().length === 1);
  assert.equal(socket.subscriptions()[0]?.offset, '9_0');
  // A retryable error (503) is retried; a 400 reaches onError as the FetchError HTTP gives.
  const retried = socket.subscriptions()[0]?.id;
  socket.push({
    type: WS_FRAME_TYPES.error,
    id: retried,
    status: 503,
    code: 'SLUICE_ERR_OVERLOADED',
    message: 'busy',
    retry_after: 0,
  });
  await until('retried', () => socket.subscriptions().length === 2);
  socket.push({
    type: WS_FRAME_TYPES.error,
    id: socket.subscriptions()[1]?.id,
    status: 400,
    code: 'SLUICE_ERR_SHAPE_INVALID',
    message: 'Invalid request',
    errors: { where: ['nope'] },
  });
  await until('the error', () => errors.length === 1);
  const error = errors[0];
  assert.ok(error instanceof FetchError);
  assert.equal(error.status, 400);
  assert.deepEqual(error.json, {
    code: 'SLUICE_ERR_SHAPE_INVALID',
    message: 'Invalid request',
    errors: { where: ['nope'] },
  });
  assert.equal(error.url, SOCKET_URL);
  assert.equal(stream.error, error);
  controller.abort();
});

test('a subscriber slower than its socket: past 8 MiB of frames not taken, it reads on over HTTP and subscribes again', async () => {
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetchClient, shapes } = server(
    snapshotThen((url) => {
      // The catch-up from the last frame applied: what the dropped frames held, and more.
      assert.equal(param(url, PARAMS.offset), '7_2');
      assert.equal(isLive(url), false, 'a catch-up, not a long-poll');
      return { messages: [insert(4, 5), UP_TO_DATE], offset: '12_0' };
    }),
  );
  const controller = new AbortController();
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items' },
    fetchClient,
    webSocket: WebSocket,
    signal: controller.signal,
    backoffOptions: BACKOFF,
  });
  const shape = new Shape(stream);
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let slowBatches = 0;
  const valuesSeen = new Set<string>();
  stream.subscribe(async (batch) => {
    for (const message of batch)
      if ('key' in message) valuesSeen.add(JSON.stringify(message.value.v));
    // The first live batch is held until the test has pushed more than the queue may keep.
    if (batch.some((m) => 'key' in m && m.value.id === 3) && slowBatches++ === 0) await gate;
  });
  await shape.rows;
  await until('a socket', () => sockets.length === 1);
  const socket = sockets[0];
  assert.ok(socket);
  socket.accept('live');
  await until('a subscribe', () => socket.subscriptions().length === 1);
  const id = socket.subscriptions()[0]?.id ?? '';
  socket.push(messagesFrame(id, '0_inf', [UP_TO_DATE], SCHEMA));
  socket.push(messagesFrame(id, '7_2', [insert(3, 9), UP_TO_DATE]));
  await until('the subscriber busy with the first batch', () => slowBatches === 1);
  // Four frames of about 2.5 MB each, arriving while the subscriber is still busy.
  const burst = Array.from({ length: 25_000 }, () => insert(4, 99));
  for (let frame = 0; frame < 4; frame++) {
    socket.push(messagesFrame(id, `${8 + frame}_0`, [...burst, UP_TO_DATE]));
  }
  assert.ok(
    socket.sent.some((f) => f.type === 'unsubscribe' && f.id === id),
    'unsubscribed as soon as the queue passed its bound',
  );
  release();
  await until('subscribed again', () => socket.subscriptions().length === 2);
  assert.equal(socket.subscriptions()[1]?.offset, '12_0', 'from the catch-up’s offset');
  assert.deepEqual(shape.currentRows, [
    { id: 1, v: 0 },
    { id: 2, v: 0 },
    { id: 3, v: 9 },
    { id: 4, v: 5 },
  ]);
  assert.equal(valuesSeen.has('99'), false, 'no dropped frame was delivered');
  assert.equal(shapes.filter(isLive).length, 0, 'no long-poll');
  controller.abort();
});
