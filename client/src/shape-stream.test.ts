import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HEADERS, PARAMS, PATHS } from '@sluice/protocol';
import {
  InvalidShapeOptionsError,
  MissingHeadersError,
  MissingShapeHandleError,
  MissingShapeUrlError,
  ReservedParamError,
} from './errors.js';
import type { Message } from './messages.js';
import { ShapeStream } from './shape-stream.js';
import type { Mode } from './shape-stream-state.js';
import { Shape } from './shape.js';

// ShapeStream against a server played in-process by its fetch client: what it asks for, in
// which order, and what it delivers. (test/e2e/sluice-client-*.test.ts run it against Sluice.)

const ORIGIN = 'http://sluice.invalid';
const SHAPE_URL = `${ORIGIN}${PATHS.shape}`;
const SCHEMA = { id: { type: 'int4', pk_index: 0, not_null: true }, v: { type: 'int4' } };
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

interface Answer {
  messages?: object[];
  handle?: string;
  offset?: string;
  fallback?: boolean;
  status?: number;
  headers?: Record<string, string>;
}

function respond(url: URL, answer: Answer): Response {
  const live = url.searchParams.get(PARAMS.live) === 'true';
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    [HEADERS.handle]: answer.handle ?? 'H',
    [HEADERS.offset]: answer.offset ?? '0_inf',
    ...(live ? { [HEADERS.cursor]: '42' } : { [HEADERS.schema]: JSON.stringify(SCHEMA) }),
    ...(answer.fallback ? { [HEADERS.fallbackMode]: 'true' } : {}),
    ...answer.headers,
  };
  const status = answer.status ?? 200;
  const body =
    status === 409 ? [{ headers: { control: 'must-refetch' } }] : (answer.messages ?? []);
  return new Response(JSON.stringify(body), { status, headers });
}

/** Waits for the request's abort, as a held long-poll does. */
function held(init: RequestInit | undefined): Promise<Response> {
  return new Promise((_, reject) => {
    init?.signal?.addEventListener('abort', () =>
      reject(new DOMException('aborted', 'AbortError')),
    );
  });
}

/**
 * A server whose shape answers `route` decides; `/v1/status` answers `status()`. Every request
 * is kept, shape requests in `shapes`.
 */
function server(
  route: (url: URL, init: RequestInit | undefined) => Answer | Promise<Response>,
  status: () => string = () => 'fallback',
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
    return answer instanceof Promise ? answer : Promise.resolve(respond(url, answer));
  };
  return { fetchClient, shapes, statusPolls };
}

const param = (url: URL | undefined, name: string) => url?.searchParams.get(name) ?? null;

async function until(what: string, done: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await sleep(5);
  }
}

test('requests carry the shape params, sorted, with quoted columns and numbered params', async () => {
  const { fetchClient, shapes } = server(() => ({ messages: [UP_TO_DATE] }));
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: {
      table: 'items',
      where: 'v > $1 and id < $2',
      params: ['1', '2'],
      columns: ['id', 'v', 'we"ird, name'],
      replica: 'full',
      tenant: () => Promise.resolve('t1'),
    },
    subscribe: false,
    fetchClient,
    liveTransport: 'long-poll',
  });
  await new Promise<void>((resolve) => stream.subscribe(() => resolve()));
  const url = shapes[0];
  assert.equal(
    url?.search,
    '?columns=%22id%22%2C%22v%22%2C%22we%22%22ird%2C+name%22&log=full&offset=-1&params%5B1%5D=1' +
      '&params%5B2%5D=2&replica=full&table=items&tenant=t1&where=v+%3E+%241+and+id+%3C+%242',
  );
});

test('live: snapshot, catch-up, long-polls with the cursor; parsed values; subscribe and stop', async () => {
  let polls = 0;
  const { fetchClient, shapes } = server((url, init) => {
    if (param(url, PARAMS.offset) === '-1')
      return { messages: [insert(1), insert(2)], offset: '0_0' };
    if (param(url, PARAMS.live) !== 'true') return { messages: [UP_TO_DATE] };
    if (polls++ === 0) return { messages: [remove(1), UP_TO_DATE], offset: '100_2' };
    return held(init);
  });
  const controller = new AbortController();
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items' },
    fetchClient,
    liveTransport: 'long-poll',
    signal: controller.signal,
  });
  const batches: Message[][] = [];
  const modes: Mode[] = [];
  stream.onModeChange((mode) => modes.push(mode));
  const shape = new Shape(stream);
  stream.subscribe((batch) => void batches.push(batch));
  assert.deepEqual(await shape.rows, [
    { id: 1, v: 0 },
    { id: 2, v: 0 },
  ]);
  await until('the delete', () => shape.currentRows.length === 1);
  assert.deepEqual(
    shapes.map((u) => [
      param(u, PARAMS.offset),
      param(u, PARAMS.handle),
      param(u, PARAMS.live),
      param(u, PARAMS.cursor),
    ]),
    [
      ['-1', null, null, null],
      ['0_0', 'H', null, null],
      ['0_inf', 'H', 'true', ''],
      ['100_2', 'H', 'true', '42'],
    ],
  );
  assert.deepEqual(modes, ['live']);
  assert.equal(stream.isUpToDate, true);
  assert.equal(stream.lastOffset, '100_2');
  assert.equal(stream.shapeHandle, 'H');
  assert.equal(stream.isConnected(), true);
  assert.ok(stream.lastSyncedAt());
  controller.abort();
  await until('stopped', () => !stream.isConnected());
  const count = shapes.length;
  await sleep(30);
  assert.equal(shapes.length, count, 'no request after abort');
});

test('fallback: no long-polls, refreshes replace the rows, status live resumes the log (no refetch)', async () => {
  let serverState = 'live';
  let snapshot = [insert(2, 1), insert(3, 1)];
  const { fetchClient, shapes, statusPolls } = server(
    (url, init) => {
      const offset = param(url, PARAMS.offset);
      const fallback = serverState === 'fallback';
      if (offset === '-1' && !url.searchParams.has(PARAMS.handle) && fallback)
        return { messages: [...snapshot, UP_TO_DATE], handle: 'F-fallback-1', fallback };
      if (offset === '-1') return { messages: [insert(1), insert(2)], offset: '0_0' };
      if (offset === '0_0') return { messages: [UP_TO_DATE] };
      if (offset === '0_inf' && param(url, PARAMS.live) === 'true') {
        serverState = 'fallback'; // the outage begins; the held poll is answered with the header
        return { messages: [UP_TO_DATE], fallback: true };
      }
      if (offset === '0_inf')
        return { messages: [insert(3, 1), remove(1), UP_TO_DATE], offset: '9_4' };
      return held(init);
    },
    () => serverState,
  );
  const modes: Mode[] = [];
  const controller = new AbortController();
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items' },
    fetchClient,
    liveTransport: 'long-poll',
    signal: controller.signal,
    statusPollIntervalMs: 20,
    fallbackRefreshIntervalMs: 60,
    onModeChange: (mode) => modes.push(mode),
  });
  const shape = new Shape(stream);
  const notified: { ids: unknown[]; mode: Mode }[] = [];
  shape.subscribe(({ rows, mode }) => notified.push({ ids: rows.map((r) => r.id), mode }));
  const batches: { messages: Message[]; mode: Mode }[] = [];
  stream.subscribe((messages, { mode }) => void batches.push({ messages, mode }));

  await until('fallback', () => stream.mode === 'fallback');
  await until(
    'first refresh',
    () => shape.currentRows.length === 2 && shape.currentRows[0]?.id === 2,
  );
  assert.equal(stream.shapeHandle, 'H', 'the live handle is remembered');
  assert.equal(stream.lastOffset, '0_inf');
  // A later refresh with a row deleted: it disappears.
  snapshot = [insert(3, 2)];
  await until('second refresh', () => shape.currentRows.length === 1);
  assert.deepEqual(shape.currentRows, [{ id: 3, v: 2 }]);
  const refreshes = shapes.filter((u) => u.searchParams.has(PARAMS.cacheBuster));
  assert.ok(refreshes.length >= 2);
  for (const u of refreshes) {
    assert.equal(param(u, PARAMS.offset), '-1');
    assert.equal(param(u, PARAMS.handle), null, 'a refresh names no handle');
    assert.match(param(u, PARAMS.cacheBuster) ?? '', /^fallback_H_0_inf_\d+$/);
  }
  assert.ok(statusPolls.length > 0, 'the status is polled');
  assert.equal(
    shapes.filter((u) => param(u, PARAMS.live) === 'true').length,
    1,
    'no long-poll in fallback',
  );

  serverState = 'live';
  await until('live again', () => stream.mode === 'live');
  await until('resumed', () => shape.currentRows.length === 1 && shape.currentRows[0]?.v === 1);
  const resume = shapes.find(
    (u) => param(u, PARAMS.offset) === '0_inf' && param(u, PARAMS.live) === null,
  );
  assert.equal(param(resume, PARAMS.handle), 'H');
  assert.deepEqual(modes, ['live', 'fallback', 'live']);
  const refetches = batches
    .flatMap((b) => b.messages)
    .filter((m) => !('key' in m) && m.headers.control === 'must-refetch' && !m.headers.fallback);
  assert.equal(refetches.length, 0);
  assert.ok(batches.some((b) => b.mode === 'fallback') && batches.at(-1)?.mode === 'live');
  // Told when the data first was complete, at every refresh, and when live again.
  assert.match(notified.map((n) => n.mode).join(), /^live(,fallback)+,live$/);
  // Live again: status polling has stopped.
  const polls = statusPolls.length;
  await sleep(60);
  assert.equal(statusPolls.length, polls);
  controller.abort();
});

test('unsubscribing the last subscriber stops requests and status polls; subscribing resumes', async () => {
  const { fetchClient, shapes, statusPolls } = server(() => ({
    messages: [insert(1), UP_TO_DATE],
    handle: 'F-fallback-1',
    fallback: true,
  }));
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items' },
    fetchClient,
    liveTransport: 'long-poll',
    statusPollIntervalMs: 10,
    fallbackRefreshIntervalMs: 10_000,
  });
  const stop = stream.subscribe(() => undefined);
  await until('polling', () => statusPolls.length >= 2);
  stop();
  const [requests, polls] = [shapes.length, statusPolls.length];
  await sleep(50);
  assert.deepEqual([shapes.length, statusPolls.length], [requests, polls]);
  assert.equal(stream.isConnected(), false);
  const again = stream.subscribe(() => undefined);
  await until('polling again', () => statusPolls.length > polls);
  assert.equal(shapes.length, requests, 'fallback data is current: no new request');
  again();
});

test('a 409 publishes must-refetch and starts again from -1 under the new handle', async () => {
  let refetched = false;
  const { fetchClient, shapes } = server((url, init) => {
    if (param(url, PARAMS.offset) === '-1' && !refetched)
      return { messages: [insert(1)], offset: '0_0', handle: 'H1' };
    if (!refetched) {
      refetched = true;
      return { status: 409, handle: 'H2' };
    }
    if (param(url, PARAMS.offset) === '-1')
      return { messages: [insert(2)], offset: '0_0', handle: 'H2' };
    if (param(url, PARAMS.live) !== 'true') return { messages: [UP_TO_DATE], handle: 'H2' };
    return held(init);
  });
  const controller = new AbortController();
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items' },
    fetchClient,
    liveTransport: 'long-poll',
    signal: controller.signal,
  });
  const messages: Message[] = [];
  stream.subscribe((batch) => void messages.push(...batch));
  const shape = new Shape(stream);
  assert.deepEqual(await shape.rows, [{ id: 2, v: 0 }]);
  assert.deepEqual(
    messages.map((m) => ('key' in m ? m.headers.operation : m.headers.control)),
    ['insert', 'must-refetch', 'insert', 'up-to-date'],
  );
  const after = shapes[2];
  assert.deepEqual([param(after, PARAMS.offset), param(after, PARAMS.handle)], ['-1', 'H2']);
  assert.ok(param(after, PARAMS.cacheBuster), 'a cache-buster after a 409');
  assert.equal(stream.shapeHandle, 'H2');
  controller.abort();
});

test('onError: returning params retries with them; returning nothing stops and tells subscribers', async () => {
  const { fetchClient, shapes } = server((url) =>
    param(url, 'token') === 'good' ? { messages: [UP_TO_DATE] } : { status: 401 },
  );
  const errors: Error[] = [];
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items', token: 'bad' },
    subscribe: false,
    fetchClient,
    liveTransport: 'long-poll',
    backoffOptions: { initialDelay: 1, maxDelay: 5, multiplier: 2 },
    onError: (error) => {
      errors.push(error);
      return { params: { token: 'good' } };
    },
  });
  await new Promise<void>((resolve) => stream.subscribe(() => resolve()));
  assert.equal(errors.length, 1);
  assert.equal((errors[0] as { status?: number }).status, 401);
  assert.deepEqual(
    shapes.map((u) => param(u, 'token')),
    ['bad', 'good'],
  );

  const failing = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items' },
    fetchClient: server(() => ({ status: 400 })).fetchClient,
    onError: () => undefined,
  });
  const told = await new Promise<Error>((resolve) => failing.subscribe(() => undefined, resolve));
  assert.equal(told.name, 'FetchError');
  assert.equal(failing.error, told);
  assert.equal(failing.isConnected(), false);
});

test('missing headers stop the stream even when onError asks for a retry', async () => {
  const { fetchClient, shapes } = server(() => ({
    messages: [UP_TO_DATE],
    headers: { [HEADERS.handle]: '' },
  }));
  const noHandle: typeof fetch = async (input, init) => {
    const response = await fetchClient(input, init);
    const headers = new Headers(response.headers);
    headers.delete(HEADERS.handle);
    return new Response(await response.text(), { status: response.status, headers });
  };
  let asked = 0;
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items' },
    fetchClient: noHandle,
    onError: () => {
      asked++;
      return {};
    },
  });
  const error = await new Promise<Error>((resolve) => stream.subscribe(() => undefined, resolve));
  assert.ok(error instanceof MissingHeadersError);
  assert.equal(error.code, 'SLUICE_ERR_CLIENT_MISSING_HEADERS');
  assert.match(error.message, /electric-handle/);
  assert.equal(asked, 1);
  assert.equal(shapes.length, 1);
});

test('forceDisconnectAndRefresh ends the held long-poll and asks without live, then resolves', async () => {
  const { fetchClient, shapes } = server((url, init) => {
    if (param(url, PARAMS.offset) === '-1') return { messages: [insert(1), UP_TO_DATE] };
    if (param(url, PARAMS.live) === 'true') return held(init);
    return { messages: [insert(2), UP_TO_DATE], offset: '5_0' };
  });
  const controller = new AbortController();
  const stream = new ShapeStream({
    url: SHAPE_URL,
    params: { table: 'items' },
    fetchClient,
    liveTransport: 'long-poll',
    signal: controller.signal,
  });
  const shape = new Shape(stream);
  await shape.rows;
  await until('long-polling', () => shapes.some((u) => param(u, PARAMS.live) === 'true'));
  await stream.forceDisconnectAndRefresh();
  const refresh = shapes.find(
    (u) => param(u, PARAMS.offset) === '0_inf' && param(u, PARAMS.live) === null,
  );
  assert.ok(refresh, 'a catch-up request');
  assert.equal(param(refresh, PARAMS.cursor), '');
  assert.equal(shape.currentRows.length, 2);
  assert.equal(stream.error, undefined, 'the aborted long-poll is no error');
  controller.abort();
});

test('options are checked: url, handle with an offset, reserved params, intervals', () => {
  const base = { url: SHAPE_URL, params: { table: 'items' } };
  assert.throws(() => new ShapeStream({ ...base, url: '' }), MissingShapeUrlError);
  assert.throws(() => new ShapeStream({ ...base, offset: '5_0' }), MissingShapeHandleError);
  assert.throws(
    () => new ShapeStream({ ...base, params: { table: 'items', offset: '1' } as never }),
    (error: Error) => error instanceof ReservedParamError && error.message.includes('offset'),
  );
  assert.throws(
    () => new ShapeStream({ ...base, statusPollIntervalMs: 0 }),
    (error: Error) =>
      error instanceof InvalidShapeOptionsError && error.name === 'InvalidShapeOptionsError',
  );
  assert.throws(() => new ShapeStream({ ...base, signal: {} as AbortSignal }), {
    code: 'SLUICE_ERR_CLIENT_INVALID_SIGNAL',
  });
  const stream = new ShapeStream({
    ...base,
    url: `${ORIGIN}/sync${PATHS.shape}`,
    log: 'changes_only',
  });
  assert.equal(stream.logMode, 'changes_only');
  assert.equal(stream.mode, 'live');
  assert.equal(stream.isLoading(), true);
});
