import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ServerState } from '@sluice/protocol';
import { watchServerStatus } from './status-poller.js';

const STATUS_URL = 'http://sluice.invalid/v1/status';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A status endpoint in-process: answers `state` (or `answer()`), counting requests per URL. */
function statusServer(state: () => ServerState, answer?: () => Response) {
  const requests: string[] = [];
  const fetchClient: typeof fetch = (input) => {
    requests.push(input instanceof Request ? input.url : input.toString());
    const body = JSON.stringify({ status: state(), replication_available: state() === 'live' });
    return Promise.resolve(answer?.() ?? new Response(body, { status: 200 }));
  };
  return { fetchClient, requests };
}

test('streams watching one status URL share one poller, at the shortest interval', async () => {
  const server = statusServer(() => 'fallback');
  const seen: ServerState[][] = [[], [], []];
  const stops = [40, 40, 1_000].map((intervalMs, i) =>
    watchServerStatus(STATUS_URL, server.fetchClient, {
      intervalMs,
      onStatus: (status) => seen[i]?.push(status),
    }),
  );
  // Three polls at the shortest interval take ~120 ms; at the slow watcher's, 3 s. Waiting for
  // them (rather than sleeping a fixed time) keeps the test right on a loaded machine.
  const started = Date.now();
  while (seen.some((statuses) => statuses.length < 3) && Date.now() - started < 2_500) {
    await sleep(5);
  }
  const elapsedMs = Date.now() - started;
  for (const stop of stops) stop();
  assert.ok(server.requests.length >= 3, `only ${server.requests.length} polls in ${elapsedMs} ms`);
  // One poller for the three watchers: at most one poll per 40 ms, not three.
  assert.ok(
    server.requests.length <= elapsedMs / 40 + 1,
    `${server.requests.length} polls in ${elapsedMs} ms`,
  );
  for (const statuses of seen) assert.equal(statuses.length, server.requests.length);
  assert.ok(seen.every((statuses) => statuses.every((s) => s === 'fallback')));
});

test('the first poll waits an interval: the stream was just told the server is in fallback', async () => {
  const server = statusServer(() => 'fallback');
  const stop = watchServerStatus(STATUS_URL, server.fetchClient, {
    intervalMs: 100,
    onStatus: () => undefined,
  });
  const started = Date.now();
  while (server.requests.length === 0) await sleep(5);
  stop();
  assert.ok(Date.now() - started >= 95, `first poll after ${Date.now() - started} ms`);
});

test('polling goes on while anyone watches and stops when the last one leaves', async () => {
  const server = statusServer(() => 'fallback');
  const watch = { intervalMs: 20, onStatus: () => undefined };
  const stopA = watchServerStatus(STATUS_URL, server.fetchClient, watch);
  const stopB = watchServerStatus(STATUS_URL, server.fetchClient, { ...watch });
  await sleep(70);
  stopA();
  stopA(); // twice is harmless, and does not remove the other watcher
  const beforeB = server.requests.length;
  await sleep(70);
  assert.ok(server.requests.length > beforeB, 'B still polls');
  stopB();
  const after = server.requests.length;
  await sleep(100);
  assert.equal(server.requests.length, after, 'nobody polls any more');
});

test('a new watcher after the last left starts a new poller', async () => {
  const server = statusServer(() => 'live');
  const statuses: ServerState[] = [];
  watchServerStatus(STATUS_URL, server.fetchClient, {
    intervalMs: 20,
    onStatus: () => undefined,
  })();
  const stop = watchServerStatus(STATUS_URL, server.fetchClient, {
    intervalMs: 20,
    onStatus: (status) => statuses.push(status),
  });
  await sleep(70);
  stop();
  assert.ok(statuses.length >= 1 && statuses.every((s) => s === 'live'));
});

test('different URLs or fetch clients poll separately', async () => {
  const one = statusServer(() => 'fallback');
  const two = statusServer(() => 'fallback');
  const watch = { intervalMs: 30, onStatus: () => undefined };
  const stops = [
    watchServerStatus(STATUS_URL, one.fetchClient, watch),
    watchServerStatus(`${STATUS_URL}?other`, one.fetchClient, watch),
    watchServerStatus(STATUS_URL, two.fetchClient, watch),
  ];
  await sleep(100);
  for (const stop of stops) stop();
  assert.ok(one.requests.some((url) => url.endsWith('?other')));
  assert.ok(one.requests.some((url) => url === STATUS_URL));
  assert.ok(two.requests.length >= 1);
});

test('errors and odd answers are skipped, the polling goes on; retry-after slows it', async () => {
  let answers = 0;
  const server = statusServer(
    () => 'live',
    () => {
      answers++;
      if (answers === 1) return new Response('not json', { status: 200 });
      if (answers === 2)
        return new Response('{}', { status: 503, headers: { 'retry-after': '0.15' } });
      return new Response(JSON.stringify({ status: 'live' }), { status: 200 });
    },
  );
  const statuses: ServerState[] = [];
  const started = Date.now();
  const stop = watchServerStatus(STATUS_URL, server.fetchClient, {
    intervalMs: 20,
    onStatus: (status) => statuses.push(status),
  });
  while (statuses.length === 0 && Date.now() - started < 2_000) await sleep(10);
  stop();
  assert.deepEqual(statuses, ['live']);
  assert.equal(server.requests.length, 3);
  assert.ok(Date.now() - started >= 150, 'the 503 asked for 150 ms');
});

test('a poll in flight when the last watcher leaves reports nothing', async () => {
  let release: () => void = () => undefined;
  const statuses: ServerState[] = [];
  const fetchClient: typeof fetch = (_input, init) =>
    new Promise((resolve, reject) => {
      release = () => resolve(new Response(JSON.stringify({ status: 'live' })));
      init?.signal?.addEventListener('abort', () => reject(new Error('aborted')));
    });
  const stop = watchServerStatus(STATUS_URL, fetchClient, {
    intervalMs: 10,
    onStatus: (status) => statuses.push(status),
  });
  await sleep(40);
  stop();
  release();
  await sleep(20);
  assert.deepEqual(statuses, []);
});
