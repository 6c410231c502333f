// The floor of measure 3 (latency-bench.ts): the least a Node process can do to deliver one row to
// N held long-polls or N WebSockets on this machine, with nothing of Sluice in it. It holds every
// `live` GET (any path) on bare `node:http`, and accepts WebSockets on bare `ws` (the library
// Sluice's transport is built on), answering a `subscribe` frame with an empty `messages` frame.
// `POST /fire?id=N` builds one body holding row N, as Sluice's would look (a change message and an
// up-to-date message, with Sluice's live headers), and writes it once to every held long-poll and
// every socket in one synchronous pass. No database, log, durability, routing or validation: what
// is left is the kernel's loopback and Node's HTTP and WebSocket framing. The bench starts it as
// a child process, as it starts Sluice, and prints the port on stdout once listening.
import http from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';

const table = process.argv[2] ?? 'bench_live';
const held = new Set<http.ServerResponse>();
/** Each subscribed socket, with its subscription's id. */
const sockets = new Map<WebSocket, string>();

const server = http.createServer((request, response) => {
  const url = new URL(request.url ?? '/', 'http://floor');
  if (request.method === 'POST' && url.pathname === '/fire') {
    fire(Number(url.searchParams.get('id')));
    response.writeHead(204).end();
  } else if (url.searchParams.get('live') === 'true') {
    held.add(response);
    response.on('close', () => held.delete(response));
  } else {
    response.writeHead(404).end();
  }
});
server.keepAliveTimeout = 0;
server.requestTimeout = 0;

const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (socket) => {
  socket.on('message', (data: Buffer) => {
    const frame = JSON.parse(data.toString()) as { type?: string; id?: string };
    if (frame.type !== 'subscribe') return;
    const id = JSON.stringify(frame.id ?? '');
    sockets.set(socket, id);
    socket.send(`{"type":"messages","id":${id},"messages":[]}`);
  });
  socket.on('close', () => sockets.delete(socket));
});

let offset = 1;

function fire(id: number): void {
  offset++;
  const change = JSON.stringify({
    key: `"public"."${table}"/"${id}"`,
    value: { id: String(id), ts: new Date().toISOString(), note: 'latency probe' },
    headers: {
      operation: 'insert',
      relation: ['public', table],
      lsn: String(offset),
      op_position: 0,
    },
  });
  const messages = `${change},{"headers":{"control":"up-to-date","global_last_seen_lsn":"${offset}"}}`;
  const body = Buffer.from(`[${messages}]`);
  const headers = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(body.length),
    'cache-control': 'public, max-age=5, stale-while-revalidate=5',
    etag: `"floor:${offset}"`,
    'electric-handle': 'floor',
    'electric-offset': `${offset}_0`,
    'electric-cursor': String(offset),
    'electric-up-to-date': '',
  };
  const frames = new Map<string, Buffer>();
  const frameFor = (id: string): Buffer => {
    let frame = frames.get(id);
    if (frame === undefined) {
      frame = Buffer.from(
        `{"type":"messages","id":${id},"handle":"floor","offset":"${offset}_0","messages":[${messages}]}`,
      );
      frames.set(id, frame);
    }
    return frame;
  };
  const responses = [...held];
  held.clear();
  for (const response of responses) response.writeHead(200, headers).end(body);
  for (const [socket, id] of sockets) socket.send(frameFor(id), { binary: false });
}

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address !== null && typeof address === 'object') process.stdout.write(`${address.port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
