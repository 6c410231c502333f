// ResponseReplay on a bare node:http server: it leans on node's own response fields (`_header`,
// `_headerSent`), so this runs in the unit tier, which CI runs on every Node major it supports.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, ServerResponse, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { countCalls } from './count-calls-testing.js';
import { rawResponses } from './raw-responses-testing.js';
import { ResponseReplay } from './response-replay.js';

test('one answer to many held requests: keep-alive ones get the bytes of the first as they are, and go on', async (t) => {
  const held: { req: IncomingMessage; res: ServerResponse }[] = [];
  let holding = true;
  const server = createServer((req, res) => {
    if (holding) held.push({ req, res });
    else res.writeHead(200, { 'content-length': '4' }).end('next');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  // Whatever happens, nothing is left open (a failed check must not hang the run).
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  const open = async (connection: string) => {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(`GET /held HTTP/1.1\r\nHost: a\r\nConnection: ${connection}\r\n\r\n`);
    return { socket, next: rawResponses(socket) };
  };
  const keptAlive = await Promise.all(['keep-alive', 'keep-alive', 'keep-alive'].map(open));
  const closing = await open('close');
  while (held.length < 4) await new Promise((resolve) => setTimeout(resolve, 5));
  holding = false;

  // A string body with multi-byte characters: its length is in bytes, in every copy.
  const body = '[{"value":"é ✓"}]';
  const answer = new ResponseReplay(
    200,
    ['access-control-allow-origin', '*'],
    { etag: '"1"' },
    body,
  );
  const heads = countCalls(ServerResponse.prototype, 'writeHead');
  try {
    for (const { res } of held) answer.send(res);
  } finally {
    heads.restore();
  }
  // One head built for the keep-alive ones, one for the request that closes.
  assert.equal(heads.count, 2);
  assert.ok(held.every(({ res }) => res.writableEnded && res.statusCode === 200));

  const answers = await Promise.all(keptAlive.map(({ next }) => next()));
  for (const [i, { bytes }] of answers.entries()) {
    assert.ok(bytes.equals(answers[0]!.bytes), `response ${i} is the first, byte for byte`);
  }
  const [first] = answers;
  assert.equal(first!.head[0], 'HTTP/1.1 200 OK');
  for (const line of ['access-control-allow-origin: *', 'etag: "1"', 'Connection: keep-alive']) {
    assert.ok(first!.head.includes(line), `${line} in ${first!.head.join(' | ')}`);
  }
  assert.ok(first!.head.includes(`content-length: ${Buffer.byteLength(body)}`));
  assert.equal(first!.body.toString('utf8'), body);
  const closed = await closing.next();
  assert.ok(closed.head.includes('Connection: close'));
  assert.equal(closed.body.toString('utf8'), body);
  await once(closing.socket, 'close');

  // Node saw each replayed response finish: the next request on its connection is served.
  for (const { socket, next } of keptAlive) {
    socket.write('GET /next HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal((await next()).body.toString(), 'next');
    socket.destroy();
  }
});
