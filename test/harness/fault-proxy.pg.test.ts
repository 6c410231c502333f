import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { startPostgres, type TestPostgres } from './start-postgres.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Upper bounds are deliberately loose: they only catch "never happened", not "was slow", so a
// loaded CI machine cannot make these tests flaky.
const EVENTUALLY_MS = 15_000;

async function waitFor(what: string, probe: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + EVENTUALLY_MS;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function within<T>(what: string, promise: Promise<T>, ms = EVENTUALLY_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A backend protocol message: type byte, int32 length counting itself, body. */
function backendMessage(type: string, body: Buffer | string = ''): Buffer {
  const payload = Buffer.from(body);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(payload.length + 4);
  return Buffer.concat([Buffer.from(type), length, payload]);
}

/** A NoticeResponse whose message is `text`. */
function notice(text: string): Buffer {
  return backendMessage('N', `SNOTICE\0VNOTICE\0C00000\0M${text}\0\0`);
}

/** Resolves when the client's connection is gone, however it went ('error' or 'end'). */
function connectionLost(client: pg.Client): Promise<void> {
  return new Promise((resolve) => {
    client.once('error', () => resolve());
    client.once('end', () => resolve());
  });
}

describe('FaultProxy against a real Postgres', () => {
  let postgres: TestPostgres;
  let proxy: FaultProxy;
  const clients = new Set<pg.Client>();
  let clientSeq = 0;

  before(async () => {
    postgres = await startPostgres();
    const { hostname, port } = new URL(postgres.url);
    proxy = await startFaultProxy({ host: hostname, port: Number(port) });
  });

  after(async () => {
    // Leaving any fault mode first lets clients stuck behind a blackhole finish ending.
    proxy?.setMode('pass');
    // Bounded, because a client whose connect failed half-way may never settle its end().
    await Promise.all(
      [...clients].map((client) => within('client.end()', client.end(), 5000).catch(() => {})),
    );
    await proxy?.close();
    await postgres?.stop();
  });

  /** A client that goes through the proxy, tagged so its backend can be found on the server. */
  function proxiedClient(config: pg.ClientConfig = {}): { client: pg.Client; name: string } {
    const name = `fault_proxy_test_${++clientSeq}`;
    const client = new pg.Client({
      connectionString: proxy.url(postgres.url),
      application_name: name,
      connectionTimeoutMillis: 10_000,
      ...config,
    });
    // A pg.Client emits 'error' when its idle connection dies; unhandled, that kills the process.
    client.on('error', () => {});
    clients.add(client);
    return { client, name };
  }

  /** Whether Postgres (asked directly, not through the proxy) still has the client's backend. */
  async function backendAlive(name: string): Promise<boolean> {
    const { rows } = await postgres.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
      [name],
    );
    return (rows[0]?.n ?? 0) > 0;
  }

  async function selectOne(client: pg.Client): Promise<void> {
    const { rows } = await client.query<{ one: number }>('SELECT 1 AS one');
    assert.deepEqual(rows, [{ one: 1 }]);
  }

  test('rewrites a URL to point at the proxy', () => {
    const rewritten = new URL(proxy.url('postgres://u:p@db.example:5432/my%20db?sslmode=disable'));
    assert.equal(rewritten.hostname, '127.0.0.1');
    assert.equal(rewritten.port, String(proxy.port));
    assert.equal(rewritten.username, 'u');
    assert.equal(rewritten.password, 'p');
    assert.equal(rewritten.pathname, '/my%20db');
    assert.equal(rewritten.search, '?sslmode=disable');
  });

  test('pass: queries go through and connections are counted', async () => {
    proxy.setMode('pass');
    assert.equal(proxy.mode, 'pass');
    const { client } = proxiedClient();
    await client.connect();
    await selectOne(client);
    assert.equal(proxy.connectionCount, 1);
    // Something bigger than one TCP chunk, so forwarding of multi-chunk responses is covered.
    const { rows } = await client.query<{ s: string }>("SELECT repeat('x', 1000000) AS s");
    assert.equal(rows[0]?.s.length, 1_000_000);
    await client.end();
    await waitFor('the connection to be gone', () => proxy.connectionCount === 0);
  });

  test('reset: open connections die at once, new ones fail until pass', async () => {
    proxy.setMode('pass');
    const { client, name } = proxiedClient();
    await client.connect();
    await selectOne(client);
    const lost = connectionLost(client);

    proxy.setMode('reset');
    assert.equal(proxy.mode, 'reset');
    await within('the open client to lose its connection', lost);
    // The RST went to Postgres too, so the backend does not linger.
    await waitFor('the backend to exit', async () => !(await backendAlive(name)));
    assert.equal(proxy.connectionCount, 0);

    const { client: refused } = proxiedClient();
    await assert.rejects(within('connect to fail', refused.connect()));

    proxy.setMode('pass');
    const { client: fresh } = proxiedClient();
    await fresh.connect();
    await selectOne(fresh);
    await fresh.end();
  });

  test('resetAll: one-shot reset that keeps the mode', async () => {
    proxy.setMode('pass');
    const { client } = proxiedClient();
    await client.connect();
    await selectOne(client);
    const lost = connectionLost(client);

    proxy.resetAll();
    assert.equal(proxy.mode, 'pass');
    await within('the open client to lose its connection', lost);

    const { client: fresh } = proxiedClient();
    await fresh.connect();
    await selectOne(fresh);
    await fresh.end();
  });

  test('blackhole: nothing answers, but connections stay open', async () => {
    proxy.setMode('pass');
    const { client, name } = proxiedClient({ query_timeout: 1000 });
    await client.connect();
    await selectOne(client);
    let lost = false;
    void connectionLost(client).then(() => {
      lost = true;
    });

    proxy.setMode('blackhole');
    assert.equal(proxy.mode, 'blackhole');
    await assert.rejects(client.query('SELECT 1'), /timeout/i);
    // Unlike reset, neither end learns anything: the client still has its socket and the
    // backend is still there, waiting for the rest of a query it will never get.
    assert.equal(lost, false);
    assert.equal(proxy.connectionCount, 1);
    assert.equal(await backendAlive(name), true);

    const { client: newcomer, name: newcomerName } = proxiedClient({
      connectionTimeoutMillis: 500,
    });
    await assert.rejects(within('connect to time out', newcomer.connect()), /timeout/i);
    assert.equal(await backendAlive(newcomerName), false);

    // Documented behaviour: black-holed connections are reset when the blackhole ends.
    proxy.setMode('pass');
    await within('the black-holed client to lose its connection', connectionLost(client));
    await waitFor('the black-holed backend to exit', async () => !(await backendAlive(name)));

    const { client: fresh } = proxiedClient();
    await fresh.connect();
    await selectOne(fresh);
    await fresh.end();
  });

  test('delay: each direction gets at least delayMs, order is kept, pass resumes', async () => {
    proxy.setMode('pass');
    const { client } = proxiedClient();
    await client.connect();
    await selectOne(client);

    const delayMs = 300;
    proxy.setMode('delay', { delayMs });
    assert.equal(proxy.mode, 'delay');
    const started = performance.now();
    await selectOne(client);
    const elapsed = performance.now() - started;
    // The query crosses the proxy once each way, and each crossing waits at least delayMs.
    assert.ok(elapsed >= 2 * delayMs, `round trip took ${elapsed.toFixed(1)} ms`);

    // A response of many chunks is only parseable if the chunks arrive in order.
    proxy.setMode('delay', { delayMs: 5 });
    const { rows } = await client.query<{ n: number }>(
      'SELECT n FROM generate_series(1, 50000) AS n ORDER BY n',
    );
    assert.equal(rows.length, 50_000);
    assert.equal(rows[49_999]?.n, 50_000);

    // Back to pass on the same connection, with a query in flight while switching.
    proxy.setMode('delay', { delayMs: 2000 });
    const inFlight = client.query<{ two: number }>('SELECT 2 AS two');
    await sleep(50);
    proxy.setMode('pass');
    const { rows: two } = await within('the in-flight query', inFlight);
    assert.deepEqual(two, [{ two: 2 }]);
    await selectOne(client);
    await client.end();
  });

  test('delay needs a valid delayMs', () => {
    assert.throws(() => proxy.setMode('delay'), RangeError);
    assert.throws(() => proxy.setMode('delay', { delayMs: -1 }), RangeError);
    proxy.setMode('pass');
  });

  test('injectToClients: pg sees a notice Postgres never sent, and keeps working', async () => {
    proxy.setMode('pass');
    await waitFor('earlier connections to be gone', () => proxy.connectionCount === 0);
    const { client } = proxiedClient();
    const notices: string[] = [];
    client.on('notice', (message) => notices.push(message.message ?? ''));
    await client.connect();
    await selectOne(client);

    assert.equal(proxy.injectToClients(notice('injected while idle')), 1);
    await waitFor('the notice', () => notices.length === 1);
    assert.deepEqual(notices, ['injected while idle']);
    await selectOne(client);

    // Injected again and again while a multi-megabyte result streams: every notice is one more
    // message between two DataRows, so the rows come out whole and every notice arrives.
    let injected = 0;
    let streaming = true;
    const keepInjecting = (): void => {
      if (!streaming) return;
      injected += proxy.injectToClients(notice(`during the query ${injected}`));
      setImmediate(keepInjecting);
    };
    const result = client.query<{ n: number; s: string }>(
      "SELECT n, repeat('x', 50) AS s FROM generate_series(1, 200000) AS n ORDER BY n",
    );
    keepInjecting();
    const { rows } = await result.finally(() => (streaming = false));
    assert.equal(rows.length, 200_000);
    assert.ok(rows.every((row, i) => row.n === i + 1 && row.s.length === 50));
    assert.ok(injected > 0);
    await waitFor('every injected notice', () => notices.length === 1 + injected);
    await selectOne(client);
    await client.end();
  });

  test('injectToClients refuses anything but one whole message', () => {
    assert.throws(() => proxy.injectToClients(Buffer.from('N')), RangeError);
    const wrongLength = notice('x');
    wrongLength.writeUInt32BE(wrongLength.length + 1, 1);
    assert.throws(() => proxy.injectToClients(wrongLength), RangeError);
  });
});

describe('FaultProxy.injectToClients against a scripted backend', () => {
  // A fake server writes the backend side byte by byte, so where an injection lands is exact.
  const backends: Socket[] = [];
  const server = createServer((socket) => backends.push(socket));
  let proxy: FaultProxy;

  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = await startFaultProxy({
      host: '127.0.0.1',
      port: (server.address() as AddressInfo).port,
    });
  });

  after(async () => {
    await proxy?.close();
    for (const socket of backends) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  /** A client of the proxy, with everything it received, and the backend socket serving it. */
  async function connection(): Promise<{ received: () => Buffer; backend: Socket }> {
    const accepted = backends.length;
    const chunks: Buffer[] = [];
    const client = connect(proxy.port, '127.0.0.1');
    client.on('data', (chunk: Buffer) => chunks.push(chunk));
    client.on('error', () => {});
    await waitFor('the backend to accept', () => backends.length > accepted);
    const backend = backends[accepted];
    assert.ok(backend);
    return { received: () => Buffer.concat(chunks), backend };
  }

  /** Writes `bytes` as the backend and waits until the client has `total` bytes. */
  async function send(
    conn: { received: () => Buffer; backend: Socket },
    bytes: Buffer,
    total: number,
  ): Promise<void> {
    conn.backend.write(bytes);
    await waitFor(`${total} bytes at the client`, () => conn.received().length >= total);
  }

  test('lands after the message in flight, never inside one', async () => {
    const conn = await connection();
    const injected = notice('injected');
    let expected = Buffer.alloc(0);
    const expect = async (bytes: Buffer) => {
      expected = Buffer.concat([expected, bytes]);
      await send(conn, bytes, expected.length);
    };

    // Nothing to go by before the backend's first message: not even after an SSL refusal.
    assert.equal(proxy.injectToClients(injected), 0);
    await expect(Buffer.from('N'));
    assert.equal(proxy.injectToClients(injected), 0);
    await expect(backendMessage('R', Buffer.alloc(4))); // AuthenticationOk

    // Injected while the client has three bytes of a ParameterStatus header, then a part of its
    // body: the notice waits for the message to end, and goes in where a chunk is cut.
    const status = backendMessage('S', 'server_version\x0099.0\x00');
    const ready = backendMessage('Z', 'I');
    await expect(status.subarray(0, 3));
    assert.equal(proxy.injectToClients(injected), 1);
    await expect(status.subarray(3, 12));
    await sleep(100);
    assert.deepEqual(conn.received(), expected, 'nothing injected inside the message');
    conn.backend.write(Buffer.concat([status.subarray(12), ready.subarray(0, 2)]));
    expected = Buffer.concat([expected, status.subarray(12), injected, ready.subarray(0, 2)]);
    await waitFor('the rest', () => conn.received().length >= expected.length);
    await expect(ready.subarray(2));
    assert.deepEqual(conn.received(), expected);

    // Between two messages it goes out at once.
    assert.equal(proxy.injectToClients(injected), 1);
    expected = Buffer.concat([expected, injected]);
    await waitFor('the notice', () => conn.received().length >= expected.length);
    assert.deepEqual(conn.received(), expected);
    conn.backend.destroy();
  });

  test('leaves encrypted connections alone', async () => {
    const plain = await connection();
    await send(plain, Buffer.concat([Buffer.from('N'), backendMessage('R', Buffer.alloc(4))]), 10);
    // 'S': SSL accepted; what follows is TLS, whose bytes are no Postgres messages.
    const tls = await connection();
    await send(tls, Buffer.from([0x53, 0x16, 0x03, 0x03, 0x00, 0x02, 0x01, 0x02]), 8);
    assert.equal(proxy.injectToClients(notice('only the plain one')), 1);
    await waitFor('the plain client to get it', () => plain.received().length > 10);
    await sleep(100);
    assert.equal(tls.received().length, 8);
    plain.backend.destroy();
    tls.backend.destroy();
  });
});
