import assert from 'node:assert/strict';
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
});
