import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { HEADERS } from '@sluice/protocol';
import { BackoffDefaults, backoffDelay, parseRetryAfter, sleep } from './backoff.js';
import { FetchBackoffAbortError, FetchError, MalformedResponseError } from './errors.js';
import { fetchWithBackoff } from './fetch-with-backoff.js';

const OPTIONS = { initialDelay: 100, maxDelay: 1_000, multiplier: 2 };
const asIs = (response: Response) => Promise.resolve(response);

test('full jitter: a uniform pick below a cap that grows per attempt up to maxDelay', () => {
  const top = () => 0.999_999;
  assert.equal(
    backoffDelay(1, OPTIONS, 0, () => 0),
    0,
  );
  assert.ok(Math.abs(backoffDelay(1, OPTIONS, 0, top) - 100) < 0.01);
  assert.ok(Math.abs(backoffDelay(3, OPTIONS, 0, top) - 400) < 0.01);
  assert.ok(Math.abs(backoffDelay(30, OPTIONS, 0, top) - 1_000) < 0.01, 'capped');
  assert.equal(
    backoffDelay(2, OPTIONS, 0, () => 0.5),
    100,
  );
  // Real randomness: spread over the whole range, never beyond the cap.
  const picks = Array.from({ length: 2_000 }, () => backoffDelay(4, OPTIONS));
  assert.ok(picks.every((ms) => ms >= 0 && ms < 800));
  assert.ok(Math.min(...picks) < 100 && Math.max(...picks) > 700, 'jittered across the range');
});

test('retry-after is a floor over the jitter, even beyond maxDelay', () => {
  assert.equal(
    backoffDelay(1, OPTIONS, 250, () => 0),
    250,
  );
  assert.equal(
    backoffDelay(1, OPTIONS, 5_000, () => 0.999),
    5_000,
  );
  assert.ok(
    Math.abs(backoffDelay(3, OPTIONS, 10, () => 0.5) - 200) < 0.01,
    'jitter above the floor',
  );
});

test('retry-after: delta-seconds or an HTTP date; absent or unreadable is 0; capped at an hour', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('1', now), 1_000);
  assert.equal(parseRetryAfter('0.25', now), 250);
  assert.equal(parseRetryAfter('0', now), 0);
  assert.equal(parseRetryAfter('-3', now), 0);
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now), 30_000);
  assert.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now), 0, 'a date in the past');
  assert.equal(parseRetryAfter('soon', now), 0);
  assert.equal(parseRetryAfter(null, now), 0);
  assert.equal(parseRetryAfter(undefined, now), 0);
  assert.equal(parseRetryAfter('86400', now), 3_600_000);
});

test('the defaults are the official client’s: 1 s, ×2, 32 s cap, forever', () => {
  assert.deepEqual(BackoffDefaults, {
    initialDelay: 1_000,
    maxDelay: 32_000,
    multiplier: 2,
    maxRetries: Infinity,
  });
});

/** A fetch client that plays `script` in order, recording when each call came. */
function scripted(script: (() => Response | Promise<Response>)[]) {
  const calls: number[] = [];
  const fetchClient: typeof fetch = () => {
    calls.push(Date.now());
    const next = script[Math.min(calls.length - 1, script.length - 1)];
    return Promise.resolve(next ? next() : new Response(null, { status: 500 }));
  };
  return { fetchClient, calls };
}

const ok = () => new Response('[]', { status: 200 });
const status =
  (code: number, headers: Record<string, string> = {}) =>
  () =>
    new Response(JSON.stringify({ code: 'X', message: 'no' }), {
      status: code,
      headers: { 'content-type': 'application/json', ...headers },
    });
const networkError = () => Promise.reject(new TypeError('fetch failed'));
const FAST = { initialDelay: 5, maxDelay: 20, multiplier: 2 };
const URL_ = new URL('http://sluice.invalid/v1/shape?offset=-1');
const init = () => ({ headers: {}, signal: new AbortController().signal });

test('5xx, 429 and network errors are retried until a 2xx', async () => {
  const { fetchClient, calls } = scripted([
    status(503),
    status(429),
    networkError,
    status(500),
    ok,
  ]);
  const failures: number[] = [];
  const options = { ...FAST, onFailedAttempt: () => failures.push(Date.now()) };
  const response = await fetchWithBackoff(fetchClient, URL_, init(), options, asIs);
  assert.equal(response.status, 200);
  assert.equal(calls.length, 5);
  assert.equal(failures.length, 4);
});

test('retry-after holds the next attempt back at least that long', async () => {
  const { fetchClient, calls } = scripted([status(503, { [HEADERS.retryAfter]: '0.3' }), ok]);
  await fetchWithBackoff(fetchClient, URL_, init(), FAST, asIs);
  const [first = 0, second = 0] = calls;
  assert.ok(second - first >= 290, `waited ${second - first} ms`);
});

test('other 4xx (409 included) are thrown at once, with status, body and headers', async () => {
  for (const code of [400, 401, 404, 409]) {
    const { fetchClient, calls } = scripted([status(code, { [HEADERS.handle]: 'h2' }), ok]);
    const error = await fetchWithBackoff(fetchClient, URL_, init(), FAST, asIs).then(
      () => assert.fail('no error'),
      (thrown: unknown) => thrown,
    );
    assert.ok(error instanceof FetchError);
    assert.equal(error.status, code);
    assert.equal(error.code, 'SLUICE_ERR_CLIENT_HTTP');
    assert.equal(error.name, 'FetchError');
    assert.deepEqual(error.json, { code: 'X', message: 'no' });
    assert.equal(error.headers[HEADERS.handle], 'h2');
    assert.equal(calls.length, 1);
  }
});

test('maxRetries bounds the retries; the last error is thrown', async () => {
  const { fetchClient, calls } = scripted([status(503)]);
  const error = await fetchWithBackoff(
    fetchClient,
    URL_,
    init(),
    { ...FAST, maxRetries: 2 },
    asIs,
  ).then(
    () => assert.fail('no error'),
    (thrown: unknown) => thrown,
  );
  assert.ok(error instanceof FetchError && error.status === 503);
  assert.equal(calls.length, 3, 'the first attempt and two retries');
});

test('aborting ends a backoff wait at once with FetchBackoffAbortError', async () => {
  const controller = new AbortController();
  const { fetchClient } = scripted([status(503, { [HEADERS.retryAfter]: '60' })]);
  const started = Date.now();
  const pending = fetchWithBackoff(
    fetchClient,
    URL_,
    { headers: {}, signal: controller.signal },
    FAST,
    asIs,
  );
  setTimeout(() => controller.abort(), 50);
  await assert.rejects(pending, FetchBackoffAbortError);
  assert.ok(Date.now() - started < 5_000);
  await assert.rejects(sleep(10, controller.signal), { code: 'SLUICE_ERR_CLIENT_ABORTED' });
});

/**
 * A real HTTP server on loopback whose first `cuts` answers send their headers and half a body,
 * then destroy the connection; the answers after those are whole.
 */
async function cuttingServer(
  cuts: number,
): Promise<{ server: Server; url: URL; served: () => number }> {
  let served = 0;
  const server = createServer((_request, response) => {
    served++;
    const body = JSON.stringify([{ headers: { control: 'up-to-date' } }]);
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    if (served <= cuts) {
      response.write(body.slice(0, 10));
      setTimeout(() => response.socket?.destroy(), 20);
    } else response.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: new URL(`http://127.0.0.1:${port}/v1/shape`), served: () => served };
}

test('a connection cut while the body arrives is retried like a failed fetch, then read whole', async () => {
  const { server, url, served } = await cuttingServer(2);
  try {
    const text = await fetchWithBackoff(fetch, url, init(), FAST, (response) => response.text());
    assert.deepEqual(JSON.parse(text), [{ headers: { control: 'up-to-date' } }]);
    assert.equal(served(), 3, 'two cut answers, then a whole one');
  } finally {
    server.close();
  }
});

test('cut bodies count against maxRetries; what the reader finds wrong is not retried', async () => {
  const { server, url, served } = await cuttingServer(Infinity);
  try {
    const options = { ...FAST, maxRetries: 1 };
    await assert.rejects(
      fetchWithBackoff(fetch, url, init(), options, (response) => response.text()),
      TypeError,
    );
    assert.equal(served(), 2, 'the first attempt and one retry');
  } finally {
    server.close();
  }
  const whole = await cuttingServer(0);
  try {
    const malformed = (response: Response) =>
      response.text().then(() => Promise.reject(new MalformedResponseError('u', 'not JSON')));
    await assert.rejects(
      fetchWithBackoff(fetch, whole.url, init(), FAST, malformed),
      MalformedResponseError,
    );
    assert.equal(whole.served(), 1);
  } finally {
    whole.server.close();
  }
});
