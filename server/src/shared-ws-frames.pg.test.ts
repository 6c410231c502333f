// A shape's WebSocket fan-out (ws/shape-fan-out.ts) writes one prepared frame (ws's framing, made
// once) to every socket at the same position, through each socket's own sender: no `send` per
// socket. In-process, so that the sends can be counted; over real sockets against a real Postgres
// and replication.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { WS_FRAME_TYPES } from '@sluice/protocol';
import { WebSocket } from 'ws';
import { countCalls } from './http/count-calls-testing.js';
import { itemsEnd, startInProcessApp, type InProcessApp } from './in-process-app-testing.js';

const SOCKETS = 5;

let sluice: InProcessApp;
let baseUrl: string;

before(async () => {
  sluice = await startInProcessApp();
  baseUrl = sluice.baseUrl;
});

after(() => sluice.stop());

/** Resolves once `done()` holds; throws, naming `what`, after 10 s. */
async function until(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
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
  const end = await itemsEnd(baseUrl);
  const clients = await Promise.all(Array.from({ length: SOCKETS }, () => subscribed(end)));
  const seen = clients.map(({ frames }) => frames.length);

  // Frames sent through `send` while the commit fans out (the prepared ones are not).
  const sends = countCalls(WebSocket.prototype, 'send');
  let fannedOut: string[];
  try {
    await sluice.db.query(`INSERT INTO items VALUES (2, 'second')`);
    for (const [i, { frames }] of clients.entries()) {
      await until(() => frames.length > seen[i]!, `socket ${i}'s frame of the commit`);
    }
    fannedOut = clients.map(({ frames }, i) => frames[seen[i]!]!);
  } finally {
    sends.restore();
  }
  assert.equal(sends.count, 0);
  for (const frame of fannedOut) assert.equal(frame, fannedOut[0]);
  const frame = JSON.parse(fannedOut[0]!) as { id: string; messages: { value?: object }[] };
  assert.equal(frame.id, 'one');
  assert.deepEqual(frame.messages[0]?.value, { id: '2', title: 'second' });

  // The sockets go on: the next commit reaches them all too.
  const counts = clients.map(({ frames }) => frames.length);
  await sluice.db.query(`INSERT INTO items VALUES (3, 'third')`);
  for (const [i, { frames }] of clients.entries()) {
    await until(() => frames.length > counts[i]!, `socket ${i}'s frame of the next commit`);
    assert.match(frames.at(-1)!, /third/);
  }
  for (const { socket } of clients) socket.close();
});
