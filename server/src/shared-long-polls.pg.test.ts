// Held long-polls of one shape woken by one flush share one answer (http/shared-live-answer.ts):
// one log read, byte-identical bodies, the same headers. Held long-polls are parked before Fastify
// routes them (http/long-poll-park.ts), yet answered, logged and counted like any response.
// In-process, so that the log's reads, the hooks and the log lines can be seen; over real HTTP
// against a real Postgres and replication.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { formatLogOffset, type LogOffset } from '@sluice/protocol';
import type { TestDatabase } from '@sluice/harness';
import type { FastifyInstance, FastifyReply } from 'fastify';
import {
  itemsEnd,
  itemsUrl,
  startInProcessApp,
  type InProcessApp,
} from './in-process-app-testing.js';
import { countCalls } from './http/count-calls-testing.js';
import { rawResponses, type RawResponse } from './http/raw-responses-testing.js';
import { DiskShapeLog } from './storage/disk-shape-log.js';

const HELD = 40;

let sluice: InProcessApp;
let db: TestDatabase;
let baseUrl: string;

/** What a response looked like to an `onResponse` hook and in its request log line. */
interface Seen {
  hook?: { status: number; elapsed: number };
  log?: { msg: string; status: number; responseTime: unknown };
}
/** By request URL (each test's requests differ in their URLs). */
const seen = new Map<string, Seen>();
function seenOf(url: string): Seen {
  let entry = seen.get(url);
  if (!entry) seen.set(url, (entry = {}));
  return entry;
}

/** Records the line Fastify logs when the reply ends (at `info`, below the test's log level). */
function recordRequestLog(reply: FastifyReply): void {
  const log = reply.log;
  const info: (...args: unknown[]) => void = log.info.bind(log);
  log.info = ((object: { res?: FastifyReply; responseTime?: unknown }, msg: string) => {
    if (object.res === reply) {
      seenOf(reply.request.url).log = {
        msg,
        status: reply.statusCode,
        responseTime: object.responseTime,
      };
    }
    info(object, msg);
  }) as typeof log.info;
}

/** Records the line a parked long-poll logs when it is answered (`LongPollPark`, on the app's log). */
function recordParkedLog(app: FastifyInstance): void {
  const log = app.log;
  const info: (...args: unknown[]) => void = log.info.bind(log);
  log.info = ((
    object: { req?: { url: string }; res?: { statusCode: number }; responseTime?: unknown },
    msg: string,
  ) => {
    if (object.req && object.res) {
      seenOf(object.req.url).log = {
        msg,
        status: object.res.statusCode,
        responseTime: object.responseTime,
      };
    }
    info(object, msg);
  }) as typeof log.info;
}

before(async () => {
  sluice = await startInProcessApp({ longPollTimeoutMs: 60_000 }, (app: FastifyInstance) => {
    app.addHook('onRequest', async (_request, reply) => recordRequestLog(reply));
    recordParkedLog(app);
    const error: (...args: unknown[]) => void = app.log.error.bind(app.log);
    app.log.error = (object: unknown, msg?: string) => {
      errors.push(msg ?? String(object));
      error(object, msg);
    };
    app.addHook('onResponse', async (request, reply) => {
      seenOf(request.url).hook = {
        status: reply.statusCode,
        elapsed: reply.elapsedTime,
      };
    });
  });
  ({ db, baseUrl } = sluice);
});

/** What the app logged at `error` (none is expected, shutdown included). */
const errors: string[] = [];

after(async () => {
  await sluice.stop();
  // Closing ends every parked wait; one whose requests all left has nobody to answer.
  assert.deepEqual(errors, []);
});

const shapeUrl = (params: Record<string, string>) => itemsUrl(baseUrl, params);

/** The held long-polls counted by /metrics. */
async function heldLongPolls(): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('sluice_http_long_polls_held '));
  return Number(line?.split(' ')[1] ?? NaN);
}

/** A request count of `/metrics` (`sluice_http_requests_total` or a histogram's `_count`). */
async function counted(name: string, labels: string[]): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`${name}{`) && labels.every((label) => l.includes(label)));
  return Number(line?.split(' ').at(-1) ?? 0);
}

test('held long-polls woken by one flush share one log read, one body and the same headers', async () => {
  const { handle, offset } = await itemsEnd(baseUrl);

  // Every read of the log after the held offset is counted; the reads themselves are real.
  let reads = 0;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- restored below, called with its log
  const read = DiskShapeLog.prototype.read;
  DiskShapeLog.prototype.read = function (this: DiskShapeLog, after: LogOffset | 'before-all') {
    if (after !== 'before-all' && formatLogOffset(after) === offset) reads++;
    return read.call(this, after);
  };
  try {
    const held = Array.from({ length: HELD }, () =>
      fetch(shapeUrl({ offset, handle, live: 'true', cursor: '' }), {
        headers: { origin: 'https://app.example' },
      }),
    );
    while ((await heldLongPolls()) < HELD) await new Promise((r) => setTimeout(r, 20));
    await db.query(`INSERT INTO items VALUES (2, 'second')`);
    const responses = await Promise.all(held);
    const bodies = await Promise.all(
      responses.map(async (r) => Buffer.from(await r.arrayBuffer())),
    );

    assert.equal(reads, 1, 'one log read for every held long-poll');
    const [first] = responses;
    assert.ok(first);
    const headersOf = (response: Response) =>
      [...response.headers].filter(([name]) => name !== 'date');
    for (const [i, response] of responses.entries()) {
      assert.equal(response.status, 200);
      assert.deepEqual(headersOf(response), headersOf(first), `headers of response ${i}`);
      assert.ok(bodies[i]?.equals(bodies[0]!), `body of response ${i}`);
    }
    const messages = JSON.parse(bodies[0]!.toString()) as { value?: { title: string } }[];
    assert.equal(messages[0]?.value?.title, 'second');
    assert.equal(first.headers.get('access-control-allow-origin'), '*');
    assert.equal(first.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(first.headers.get('content-length'), String(bodies[0]!.length));
    assert.ok(first.headers.has('electric-up-to-date'));
  } finally {
    DiskShapeLog.prototype.read = read;
  }
});

test('held long-polls at one offset with different cursors share the body, each with a cursor past its own', async () => {
  const { handle, offset } = await itemsEnd(baseUrl);
  const before = await heldLongPolls();
  // A cursor ahead of the current window: its answer must jump past it, not repeat the window's.
  const ahead = '999999999';
  const cursors = ['', '', ahead];
  const held = cursors.map((cursor) => fetch(shapeUrl({ offset, handle, live: 'true', cursor })));
  while ((await heldLongPolls()) < before + cursors.length) {
    await new Promise((r) => setTimeout(r, 20));
  }
  await db.query(`INSERT INTO items VALUES (4, 'fourth')`);
  const responses = await Promise.all(held);
  const bodies = await Promise.all(responses.map(async (r) => await r.text()));
  assert.ok(bodies.every((body) => body === bodies[0] && body.includes('fourth')));
  const [plain, alike, jumped] = responses.map((r) => Number(r.headers.get('electric-cursor')));
  assert.equal(plain, alike);
  assert.ok(plain! < Number(ahead), `the window's cursor ${plain}`);
  assert.ok(jumped! > Number(ahead), `the cursor past ${ahead}: ${jumped}`);
});

test('a held long-poll is parked before Fastify, then answered as the route answers, logged and counted', async () => {
  const { handle, offset } = await itemsEnd(baseUrl);
  const labels = (status: string) => ['route="/v1/shape"', `status="${status}"`, 'kind="live"'];
  const before = {
    live: await counted('sluice_http_requests_total', labels('200')),
    timed: await counted('sluice_http_request_duration_seconds_count', labels('200')),
    gone: await counted('sluice_http_requests_total', labels('499')),
    held: await heldLongPolls(),
  };
  const headers = { origin: 'https://app.example' };
  // Held, then woken by a flush.
  const parkedUrl = shapeUrl({ offset, handle, live: 'true', cursor: '', marker: 'parked' });
  const parked = fetch(parkedUrl, { headers });
  // Held, then its client goes away.
  const abandoning = new AbortController();
  const abandonedUrl = shapeUrl({ offset, handle, live: 'true', cursor: '', marker: 'gone' });
  const abandoned = fetch(abandonedUrl, { signal: abandoning.signal }).catch(() => 'aborted');
  while ((await heldLongPolls()) < before.held + 2) await new Promise((r) => setTimeout(r, 20));
  abandoning.abort();
  assert.equal(await abandoned, 'aborted');
  while ((await heldLongPolls()) > before.held + 1) await new Promise((r) => setTimeout(r, 20));
  await db.query(`INSERT INTO items VALUES (3, 'third')`);
  const response = await parked;
  const body = Buffer.from(await response.arrayBuffer());
  assert.equal(response.status, 200);
  assert.match(body.toString(), /third/);
  // The same request once the change is there: answered at once, by the route.
  const routedUrl = shapeUrl({ offset, handle, live: 'true', cursor: '', marker: 'routed' });
  const routed = await fetch(routedUrl, { headers });
  const routedBody = Buffer.from(await routed.arrayBuffer());

  const path = (url: string) => url.slice(baseUrl.length);
  while (!seen.get(path(routedUrl))?.hook || !seen.get(path(parkedUrl))?.log) {
    await new Promise((r) => setTimeout(r, 20));
  }
  // Fastify never saw the held ones: no hook ran for them.
  assert.equal(seen.get(path(parkedUrl))?.hook, undefined);
  assert.equal(seen.get(path(abandonedUrl))?.hook, undefined);
  // The same answer, headers and all (the cursor is each request's own; the date is the clock's).
  assert.ok(body.equals(routedBody));
  const headersOf = (r: Response) =>
    [...r.headers].filter(([name]) => name !== 'date' && name !== 'electric-cursor');
  assert.deepEqual(headersOf(response), headersOf(routed));
  assert.ok(response.headers.get('electric-cursor'));
  assert.equal(response.headers.get('access-control-allow-origin'), '*');
  assert.equal(response.headers.get('content-length'), String(body.length));
  assert.deepEqual(
    {
      ...seen.get(path(parkedUrl))!.log,
      responseTime: typeof seen.get(path(parkedUrl))!.log!.responseTime,
    },
    { msg: 'request completed', status: 200, responseTime: 'number' },
  );
  // Counted as every request is: the held one, the routed one, and the one whose client went.
  assert.equal(await counted('sluice_http_requests_total', labels('200')), before.live + 2);
  assert.equal(
    await counted('sluice_http_request_duration_seconds_count', labels('200')),
    before.timed + 2,
  );
  assert.equal(await counted('sluice_http_requests_total', labels('499')), before.gone + 1);
  assert.equal(await heldLongPolls(), before.held);
});

test('held long-polls on keep-alive connections get the bytes of the first answer as they are, and their connections serve the next request', async () => {
  const { handle, offset } = await itemsEnd(baseUrl);
  const { port } = new URL(baseUrl);
  /** A GET of the shape as it goes on the wire, with `headers` (CRLF-terminated lines). */
  const get = (params: Record<string, string>, headers = '') => {
    const url = new URL(shapeUrl({ offset, handle, ...params }));
    return `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`;
  };
  const live = { live: 'true', cursor: '', marker: 'raw' };
  const request = (connection: string) => get(live, `Connection: ${connection}\r\n`);
  const open = async () => {
    const socket = connect(Number(port), '127.0.0.1');
    await once(socket, 'connect');
    return { socket, next: rawResponses(socket) };
  };
  const keptAlive = await Promise.all(Array.from({ length: 5 }, open));
  const closing = await open();
  const before = await heldLongPolls();
  for (const { socket } of keptAlive) socket.write(request('keep-alive'));
  closing.socket.write(request('close'));
  while ((await heldLongPolls()) < before + 6) await new Promise((r) => setTimeout(r, 20));

  // Heads node:http builds while the six are answered: one for the keep-alive ones, whose
  // head and body then go out as they are to the others; one for the request that closes.
  const heads = countCalls(ServerResponse.prototype, 'writeHead');
  let answers: RawResponse[];
  let closed: RawResponse;
  try {
    await db.query(`INSERT INTO items VALUES (5, 'fifth')`);
    answers = await Promise.all(keptAlive.map(({ next }) => next()));
    closed = await closing.next();
  } finally {
    heads.restore();
  }
  assert.equal(heads.count, 2);

  for (const [i, answer] of answers.entries()) {
    assert.ok(answer.bytes.equals(answers[0]!.bytes), `response ${i} is the first, byte for byte`);
  }
  const [first] = answers;
  assert.equal(first!.head[0], 'HTTP/1.1 200 OK');
  assert.ok(first!.head.includes('Connection: keep-alive'));
  assert.ok(first!.head.some((line) => /^date: /i.test(line)));
  assert.match(first!.body.toString(), /fifth/);
  // The closing request: the same answer, written by node with its own head.
  assert.ok(closed.head.includes('Connection: close'));
  assert.ok(closed.body.equals(first!.body));
  await once(closing.socket, 'close');

  // Each kept-alive connection is free for its next request, answered by the route.
  for (const { socket, next } of keptAlive) {
    socket.write(get({}));
    const answer = await next();
    assert.equal(answer.head[0], 'HTTP/1.1 200 OK');
    assert.match(answer.body.toString(), /fifth/);
    socket.destroy();
  }
  assert.equal(await heldLongPolls(), before);
});

test('a parked wait whose requests all left stays until shutdown, which answers nobody', async () => {
  const { handle, offset } = await itemsEnd(baseUrl);
  const held = await heldLongPolls();
  const leaving = new AbortController();
  const url = shapeUrl({ offset, handle, live: 'true', cursor: '', marker: 'left' });
  const left = fetch(url, { signal: leaving.signal }).catch(() => 'aborted');
  while ((await heldLongPolls()) < held + 1) await new Promise((r) => setTimeout(r, 20));
  leaving.abort();
  assert.equal(await left, 'aborted');
  while ((await heldLongPolls()) > held) await new Promise((r) => setTimeout(r, 20));
  // The shape's wait goes on (until a change, its deadline or shutdown): `after` closes the app
  // and checks that nothing went wrong answering an empty group.
});
