// Held long-polls of one shape woken by one flush share one answer (http/shared-live-answer.ts):
// one log read, byte-identical bodies, the same headers; sent past Fastify's reply pipeline, they
// are still hooked, logged and counted like any response. In-process, so that the log's reads,
// the hooks and the log lines can be seen; over real HTTP against a real Postgres and replication.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { formatLogOffset, type LogOffset, type StatusDocument } from '@sluice/protocol';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { buildApp } from './app.js';
import { loadConfig } from './config/load-config.js';
import { DiskShapeLog } from './storage/disk-shape-log.js';

const HELD = 40;

let postgres: TestPostgres;
let db: TestDatabase;
let app: FastifyInstance;
let storageDir: string;
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

before(async () => {
  postgres = await startPostgres();
  db = await postgres.createDatabase();
  await db.query(`CREATE TABLE items (id int PRIMARY KEY, title text);
                  INSERT INTO items VALUES (1, 'first')`);
  storageDir = await mkdtemp(join(tmpdir(), 'sluice-storage-'));
  app = await buildApp({
    ...loadConfig({}),
    databaseUrl: db.url,
    port: 0,
    logLevel: 'warn',
    slotName: db.slotName,
    publicationName: db.publicationName,
    storageDir,
    longPollTimeoutMs: 60_000,
  });
  app.addHook('onRequest', async (_request, reply) => recordRequestLog(reply));
  app.addHook('onResponse', async (request, reply) => {
    seenOf(request.url).hook = {
      status: reply.statusCode,
      elapsed: reply.elapsedTime,
    };
  });
  baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
  const status = async () =>
    ((await (await fetch(`${baseUrl}/v1/status`)).json()) as StatusDocument).status;
  while ((await status()) !== 'live') {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

after(async () => {
  await app.close();
  await rm(storageDir, { recursive: true, force: true });
  await db.drop();
  await postgres.stop();
});

const shapeUrl = (params: Record<string, string>) =>
  `${baseUrl}/v1/shape?${new URLSearchParams({ table: 'items', ...params }).toString()}`;

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

/** To the end of the shape: its handle and the offset a live request starts from. */
async function shapeEnd(): Promise<{ handle: string; offset: string }> {
  let handle = '';
  let offset = '-1';
  for (;;) {
    const response = await fetch(shapeUrl(handle ? { offset, handle } : { offset }));
    assert.equal(response.status, 200);
    await response.arrayBuffer();
    handle = response.headers.get('electric-handle') ?? '';
    offset = response.headers.get('electric-offset') ?? '';
    if (response.headers.has('electric-up-to-date')) return { handle, offset };
  }
}

test('held long-polls woken by one flush share one log read, one body and the same headers', async () => {
  const { handle, offset } = await shapeEnd();

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

test('a woken long-poll, sent past the reply pipeline, is hooked, logged and counted like any response', async () => {
  const { handle, offset } = await shapeEnd();
  const labels = (kind: string) => ['route="/v1/shape"', 'status="200"', `kind="${kind}"`];
  const before = {
    live: await counted('sluice_http_requests_total', labels('live')),
    timed: await counted('sluice_http_request_duration_seconds_count', labels('live')),
  };
  // Sent by Fastify's own `send`: a catch-up read at the end.
  const catchUpUrl = shapeUrl({ offset, handle, marker: 'catch-up' });
  const catchUpResponse = await fetch(catchUpUrl);
  await catchUpResponse.arrayBuffer();
  const catchUpType = catchUpResponse.headers.get('content-type');
  // Sent on the shared, hijacked path: a held long-poll woken by a flush.
  const liveUrl = shapeUrl({ offset, handle, live: 'true', cursor: '', marker: 'live' });
  const live = fetch(liveUrl);
  while ((await heldLongPolls()) < 1) await new Promise((r) => setTimeout(r, 20));
  await db.query(`INSERT INTO items VALUES (3, 'third')`);
  const response = await live;
  const body = Buffer.from(await response.arrayBuffer());
  assert.equal(response.status, 200);
  assert.match(body.toString(), /third/);

  const path = (url: string) => url.slice(baseUrl.length);
  // The hook and the log line run as the response ends, after the client may have read it.
  const settled = () =>
    [catchUpUrl, liveUrl].every((url) => seen.get(path(url))?.hook && seen.get(path(url))?.log);
  while (!settled()) await new Promise((r) => setTimeout(r, 20));
  const catchUp = seen.get(path(catchUpUrl))!;
  const woken = seen.get(path(liveUrl))!;
  // The hooks see the status; the headers went to the wire in one `writeHead` (sendBuffer), the
  // same type as Fastify's own `send` gives, and the body's length.
  assert.equal(woken.hook!.status, 200);
  assert.equal(catchUp.hook!.status, 200);
  assert.ok(woken.hook!.elapsed > 0);
  assert.equal(response.headers.get('content-type'), catchUpType);
  assert.equal(response.headers.get('content-length'), String(body.length));
  assert.deepEqual(
    { ...woken.log, responseTime: typeof woken.log!.responseTime },
    { msg: 'request completed', status: 200, responseTime: 'number' },
  );
  assert.deepEqual(
    { ...catchUp.log, responseTime: typeof catchUp.log!.responseTime },
    { msg: 'request completed', status: 200, responseTime: 'number' },
  );
  assert.equal(await counted('sluice_http_requests_total', labels('live')), before.live + 1);
  assert.equal(
    await counted('sluice_http_request_duration_seconds_count', labels('live')),
    before.timed + 1,
  );
});
