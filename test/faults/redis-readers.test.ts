// Several Sluice servers on one Redis (issue 17): the one holding the replication lock writes the
// shape logs, the others serve them. Readers answer initial requests, long-polls woken through
// Redis pub/sub and shape creation (forwarded to the writer, so racing servers end with one
// handle); /v1/health is 200 on each; /v1/status names the writer. Every test ends with the
// oracle (every client's rows equal SELECT).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  redisSkipReason,
  startPostgres,
  startRedis,
  type TestDatabase,
  type TestPostgres,
  type TestRedis,
} from '@sluice/harness';
import { CountingFollower } from '../support/counting-follower.js';
import { assertMatchesPostgres } from '../support/shape-oracle.js';
import { SluiceFollower } from '../support/sluice-follower.js';
import { tapWebSockets } from '../support/web-socket-tap.js';
import { fetchStatus, waitForStatus } from '../support/server-status.js';
import { startSluice, waitUntilLive, type RunningSluice } from '../support/sluice-server.js';
import { assertMatchesTable, Writer } from '../support/table-oracle.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

describe('several servers on one Redis: one writes, all serve', { skip: redisSkipReason() }, () => {
  let pg: TestPostgres;
  let redis: TestRedis;

  before(async () => {
    pg = await startPostgres();
    redis = await startRedis({ appendfsync: 'always' });
  });
  after(async () => {
    await redis?.destroy();
    await pg?.stop();
  });

  /** `count` servers of `db` on the Redis, the first started being the writer. */
  async function startServers(
    db: TestDatabase,
    count: number,
    overrides: { shapeIdleTimeoutS?: number; enableShapeDelete?: boolean } = {},
  ): Promise<RunningSluice[]> {
    const config = {
      ...overrides,
      storage: 'redis' as const,
      redisUrl: redis.url,
      redisKeyPrefix: db.slotName,
      redisHealthCheckIntervalMs: 500,
      redisCommandTimeoutMs: 1_000,
      longPollTimeoutMs: 3_000,
    };
    const servers = [await startSluice(db, config)];
    await waitUntilLive(servers[0]!.baseUrl);
    while (servers.length < count) servers.push(await startSluice(db, config));
    // A reader is live once it has loaded the shapes and heard the writer beat.
    for (const server of servers) await waitUntilLive(server.baseUrl);
    return servers;
  }

  async function freshTable(rows = 0): Promise<TestDatabase> {
    const db = await pg.createDatabase();
    await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
    // Ids far above those the Writer inserts (from 1).
    if (rows > 0) {
      await db.query(`INSERT INTO items SELECT 100000 + g, g FROM generate_series(1, ${rows}) g`);
    }
    return db;
  }

  test("a reader serves the writer's logs: initial rows, live changes, health 200, status naming the writer", async () => {
    const db = await freshTable(20);
    const [writer, reader] = await startServers(db, 2);
    const follower = new CountingFollower(`${reader!.baseUrl}/v1/shape`, { table: 'items' });
    const filtered = new CountingFollower(`${reader!.baseUrl}/v1/shape`, {
      table: 'items',
      where: 'v % 2 = 0',
    });
    // @sluice/client over the WebSocket transport, on the reader too.
    const tap = tapWebSockets();
    const overSocket = new SluiceFollower(`${reader!.baseUrl}/v1/shape`, {
      params: { table: 'items' },
      liveTransport: 'websocket',
      webSocket: tap.WebSocket,
    });
    const writes = new Writer(db);
    try {
      const health = await fetch(`${reader!.baseUrl}/v1/health`);
      assert.equal(health.status, 200, "a reader stays in the load balancer's rotation");
      await health.arrayBuffer();
      const [writerStatus, readerStatus] = [
        await fetchStatus(writer!.baseUrl),
        await fetchStatus(reader!.baseUrl),
      ];
      assert.equal(readerStatus.status, 'live');
      assert.equal(writerStatus.storage.writer, writerStatus.storage.instance);
      assert.equal(readerStatus.storage.writer, writerStatus.storage.instance);
      assert.notEqual(readerStatus.storage.instance, writerStatus.storage.instance);

      await sleep(2_000);
      await writes.stop();
      await assertMatchesTable(db, follower);
      assert.equal(follower.mustRefetches, 0);
      assert.deepEqual(follower.duplicates(), []);
      assert.ok(writes.committed > 20, `the workload ran (${writes.committed} commits)`);
      const { rows } = await db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM items WHERE v % 2 = 0',
      );
      await filtered.waitFor((seen) => seen.size === rows[0]!.n);
      await assertMatchesPostgres(db, { table: 'items' }, () => overSocket.rows, 30_000);
      assert.equal(overSocket.mustRefetches, 0);
      assert.deepEqual(overSocket.audit.anomalies, [], 'every change exactly once (WebSocket)');
      assert.ok(tap.changes > 0, `changes arrived over the reader's WebSocket (${tap.changes})`);

      // The same shape, asked of the writer: the reader had it made there, so one handle.
      const fromWriter = await fetch(`${writer!.baseUrl}/v1/shape?table=items&offset=-1`);
      await fromWriter.arrayBuffer();
      assert.equal(fromWriter.headers.get('electric-handle'), follower.stream.shapeHandle);
    } finally {
      follower.close();
      filtered.close();
      overSocket.close();
      await writes.stop();
      for (const server of [reader, writer]) await server?.close();
      await db.drop();
    }
  });

  test('a long-poll held on a reader is answered as soon as the writer flushes (woken through Redis)', async (t) => {
    const db = await freshTable(1);
    const [writer, reader] = await startServers(db, 2);
    try {
      const url = `${reader!.baseUrl}/v1/shape?table=items`;
      const first = await fetch(`${url}&offset=-1`);
      await first.arrayBuffer();
      const handle = first.headers.get('electric-handle')!;
      const offset = first.headers.get('electric-offset')!;
      const delays: number[] = [];
      let id = 1;
      for (let round = 0; round < 5; round++) {
        const held = fetch(`${url}&handle=${handle}&offset=${offset}&live=true&cursor=${round}`);
        await sleep(300); // the long-poll is held
        const committedAt = Date.now();
        await db.query('INSERT INTO items VALUES ($1, 1)', [id++]);
        const answer = await held;
        delays.push(Date.now() - committedAt);
        const body = (await answer.json()) as { headers: { operation?: string } }[];
        assert.equal(answer.status, 200);
        assert.ok(
          body.some((m) => m.headers.operation === 'insert'),
          JSON.stringify(body),
        );
      }
      t.diagnostic(`commit → reader long-poll answer: ${delays.join(', ')} ms`);
      // Far below the 3 s long-poll timeout: woken, not timed out and asked again.
      assert.ok(Math.max(...delays) < 2_500, `delays ${delays.join(', ')}`);
    } finally {
      for (const server of [reader, writer]) await server?.close();
      await db.drop();
    }
  });

  test('servers racing to create the same new shape end with one handle', async () => {
    const db = await freshTable(500);
    const servers = await startServers(db, 3);
    try {
      for (const where of ['v > 10', 'v > 20 AND v < 400', 'id % 7 = 3']) {
        const query = `table=items&offset=-1&where=${encodeURIComponent(where)}`;
        // Each server asked twice at once, the writer included.
        const answers = await Promise.all(
          [...servers, ...servers].map((server) => fetch(`${server.baseUrl}/v1/shape?${query}`)),
        );
        const handles = new Set<string>();
        for (const answer of answers) {
          assert.equal(answer.status, 200, await answer.text());
          handles.add(answer.headers.get('electric-handle')!);
          await answer.arrayBuffer().catch(() => undefined);
        }
        assert.equal(handles.size, 1, `one handle for ${where}: ${[...handles].join(' ')}`);
      }
    } finally {
      for (const server of servers.reverse()) await server.close();
      await db.drop();
    }
  });

  test('a client of the writer whose next request lands on a reader keeps its handle (no 409)', async () => {
    const db = await freshTable(5);
    const [writer, reader] = await startServers(db, 2);
    try {
      // Made on the writer for its own client: the reader was never asked for it.
      const first = await fetch(`${writer!.baseUrl}/v1/shape?table=items&offset=-1`);
      assert.equal(first.status, 200);
      await first.arrayBuffer();
      const handle = first.headers.get('electric-handle')!;
      const offset = first.headers.get('electric-offset')!;
      await db.query('INSERT INTO items VALUES (1, 1)');
      // Behind a load balancer, the same client's next request goes to the reader.
      const next = await fetch(
        `${reader!.baseUrl}/v1/shape?table=items&handle=${handle}&offset=${offset}&live=true`,
      );
      const body = await next.text();
      assert.equal(next.status, 200, body);
      assert.equal(next.headers.get('electric-handle'), handle);
      assert.match(body, /"operation":"insert"/);
    } finally {
      for (const server of [reader, writer]) await server?.close();
      await db.drop();
    }
  });

  test("a bad shape asked of a reader gets the writer's 400, naming what is wrong", async () => {
    const db = await freshTable(1);
    const [writer, reader] = await startServers(db, 2);
    try {
      const answer = await fetch(
        `${reader!.baseUrl}/v1/shape?table=items&offset=-1&where=${encodeURIComponent('nope > 1')}`,
      );
      assert.equal(answer.status, 400);
      assert.match(await answer.text(), /nope/);
    } finally {
      for (const server of [reader, writer]) await server?.close();
      await db.drop();
    }
  });

  test('retention counts reads on readers: a shape read only there stays, and goes once nobody reads it', async () => {
    const db = await freshTable(5);
    const [writer, reader] = await startServers(db, 2, { shapeIdleTimeoutS: 1 });
    try {
      const url = `${reader!.baseUrl}/v1/shape?table=items`;
      const first = await fetch(`${url}&offset=-1`);
      await first.arrayBuffer();
      const handle = first.headers.get('electric-handle')!;
      // Read on the reader only, for three idle timeouts.
      for (const end = Date.now() + 3_000; Date.now() < end;) {
        const again = await fetch(`${url}&offset=-1`);
        await again.arrayBuffer();
        assert.equal(again.headers.get('electric-handle'), handle, 'the shape was kept');
        await sleep(200);
      }
      // Nobody reads it: the writer removes it, and the reader forgets it (a 409 there).
      await waitFor('the shape removed and forgotten', async () => {
        const counts = [await fetchStatus(writer!.baseUrl), await fetchStatus(reader!.baseUrl)];
        return counts.every((status) => status.shapes.count === 0);
      });
      const back = await fetch(`${url}&handle=${handle}&offset=0_inf`);
      await back.arrayBuffer();
      assert.equal(back.status, 409, 'a client coming back to the reader refetches');
    } finally {
      for (const server of [reader, writer]) await server?.close();
      await db.drop();
    }
  });

  test('DELETE on a reader is carried out by the writer; both then send its clients to a new shape', async () => {
    const db = await freshTable(5);
    const [writer, reader] = await startServers(db, 2, { enableShapeDelete: true });
    try {
      const url = `${reader!.baseUrl}/v1/shape?table=items`;
      const first = await fetch(`${url}&offset=-1`);
      await first.arrayBuffer();
      const handle = first.headers.get('electric-handle')!;
      const deleted = await fetch(`${url}&handle=${handle}`, { method: 'DELETE' });
      assert.equal(deleted.status, 202, await deleted.text());
      // Gone on both: a client coming back with the handle refetches, from a new shape.
      for (const server of [reader!, writer!]) {
        const back = await fetch(
          `${server.baseUrl}/v1/shape?table=items&handle=${handle}&offset=0_inf`,
        );
        await back.arrayBuffer();
        assert.equal(back.status, 409, `${server.baseUrl}: the deleted handle is gone`);
        assert.notEqual(back.headers.get('electric-handle'), handle);
      }
    } finally {
      for (const server of [reader, writer]) await server?.close();
      await db.drop();
    }
  });

  test('the writer closed: a reader takes over the logs; its clients keep their handles', async () => {
    const db = await freshTable(10);
    const [writer, reader] = await startServers(db, 2);
    const follower = new CountingFollower(`${reader!.baseUrl}/v1/shape`, { table: 'items' });
    const writes = new Writer(db);
    try {
      await sleep(1_000);
      await writer!.close();
      await waitFor('the reader writes', async () => {
        const { storage } = await fetchStatus(reader!.baseUrl);
        return storage.writer === storage.instance;
      });
      await waitForStatus(reader!.baseUrl, 'live', 15_000);
      await sleep(1_000);
      await writes.stop();
      await assertMatchesTable(db, follower);
      assert.equal(follower.mustRefetches, 0, 'no 409 / must-refetch');
      assert.deepEqual(follower.duplicates(), []);
      assert.equal(follower.rows.size, 10 + writes.committed);
    } finally {
      follower.close();
      await writes.stop();
      await reader?.close();
      await writer?.close().catch(() => undefined);
      await db.drop();
    }
  });
});
