// A shape's WebSocket fan-out (ws/shape-fan-out.ts) writes one prepared frame (ws's framing, made
// once) to every socket at the same position, through each socket's own sender: no `send` per
// socket. In-process, so that the sends can be counted; over real sockets against a real Postgres
// and replication.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { WS_FRAME_TYPES, type StatusDocument } from '@sluice/protocol';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import type { FastifyInstance } from 'fastify';
import { WebSocket } from 'ws';
import { buildApp } from './app.js';
import { loadConfig } from './config/load-config.js';

const SOCKETS = 5;

let postgres: TestPostgres;
let db: TestDatabase;
let app: FastifyInstance;
let storageDir: string;
let baseUrl: string;

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
  });
  baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
  const status = async () =>
    ((await (await fetch(`${baseUrl}/v1/status`)).json()) as StatusDocument).status;
  while ((await status()) !== 'live') await new Promise((resolve) => setTimeout(resolve, 50));
});

after(async () => {
  await app.close();
  await rm(storageDir, { recursive: true, force: true });
  await db.drop();
  await postgres.stop();
});

/** Resolves once `done()` holds; throws, naming `what`, after 10 s. */
async function until(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The shape's handle and the offset of its end, read over HTTP as a client reads it. */
async function shapeEnd(): Promise<{ handle: string; offset: string }> {
  let handle = '';
  let offset = '-1';
  for (;;) {
    const query = new URLSearchParams({ table: 'items', offset, ...(handle && { handle }) });
    const response = await fetch(`${baseUrl}/v1/shape?${query.toString()}`);
    assert.equal(response.status, 200);
    await response.arrayBuffer();
    handle = response.headers.get('electric-handle') ?? '';
    offset = response.headers.get('electric-offset') ?? '';
    if (response.headers.has('electric-up-to-date')) return { handle, offset };
  }
}

/** A socket subscribed to `items` from `at`, with every `messages` frame's raw text. */
async function subscribed(at: {
  handle: string;
  offset: string;
}): Promise<{ socket: WebSocket; frames: string[] }> {
  const socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/ws`);
  const frames: string[] = [];
  socket.on('message', (data: Buffer) => {
    const text = data.toString('utf8');
    const { type } = JSON.parse(text) as { type: string };
    if (type === WS_FRAME_TYPES.messages) frames.push(text);
    else if (type === WS_FRAME_TYPES.error) throw new Error(`an error frame: ${text}`);
  });
  await once(socket, 'open');
  socket.send(
    JSON.stringify({
      type: WS_FRAME_TYPES.subscribe,
      id: 'one',
      params: { table: 'items' },
      ...at,
    }),
  );
  await until(() => frames.length > 0, 'the up-to-date frame');
  return { socket, frames };
}

test('one commit reaches every socket of a shape as the same prepared frame, with no send per socket', async () => {
  const end = await shapeEnd();
  const clients = await Promise.all(Array.from({ length: SOCKETS }, () => subscribed(end)));
  const seen = clients.map(({ frames }) => frames.length);

  // Frames sent through `send` while the commit fans out (the prepared ones are not).
  let sends = 0;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- restored below, called with its socket
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (this: WebSocket, ...args: unknown[]) {
    sends++;
    return (send as (...a: unknown[]) => void).apply(this, args);
  } as typeof send;
  let fannedOut: string[];
  try {
    await db.query(`INSERT INTO items VALUES (2, 'second')`);
    for (const [i, { frames }] of clients.entries()) {
      await until(() => frames.length > seen[i]!, `socket ${i}'s frame of the commit`);
    }
    fannedOut = clients.map(({ frames }, i) => frames[seen[i]!]!);
  } finally {
    WebSocket.prototype.send = send;
  }
  assert.equal(sends, 0);
  for (const frame of fannedOut) assert.equal(frame, fannedOut[0]);
  const frame = JSON.parse(fannedOut[0]!) as { id: string; messages: { value?: object }[] };
  assert.equal(frame.id, 'one');
  assert.deepEqual(frame.messages[0]?.value, { id: '2', title: 'second' });

  // The sockets go on: the next commit reaches them all too.
  const counts = clients.map(({ frames }) => frames.length);
  await db.query(`INSERT INTO items VALUES (3, 'third')`);
  for (const [i, { frames }] of clients.entries()) {
    await until(() => frames.length > counts[i]!, `socket ${i}'s frame of the next commit`);
    assert.match(frames.at(-1)!, /third/);
  }
  for (const { socket } of clients) socket.close();
});
