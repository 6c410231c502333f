import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { freePort } from '@sluice/local-postgres';
import {
  redisSkipReason,
  startFaultProxy,
  startPostgres,
  startRedis,
  proxyTargetOf,
  type TestDatabase,
  type TestPostgres,
  type TestRedis,
} from '@sluice/harness';
import { CountingFollower } from '../support/counting-follower.js';
import { redisServerEnv } from '../support/redis-server-env.js';
import { startServerProcess } from '../support/server-process.js';
import { fetchStatus, waitForStatus } from '../support/server-status.js';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';
import { assertMatchesTable, Writer } from '../support/table-oracle.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

/**
 * Shape logs in Redis (`SLUICE_STORAGE=redis`, issue 17): the server killed and restarted on an
 * empty storage folder finds its logs in Redis; Redis restarted, killed for 30 s or black-holed
 * while clients follow and a writer commits gives fallback answers during the outage and live
 * ones after, and every client ends equal to `SELECT`.
 */
describe('Redis storage: restarts and outages lose nothing', { skip: redisSkipReason() }, () => {
  let pg: TestPostgres;
  let redis: TestRedis;

  before(async () => {
    pg = await startPostgres();
    // `always`: a Redis killed with SIGKILL keeps every write it acknowledged, so an outage
    // cannot lose what Sluice confirmed to the slot (docs/operations.md, "Redis storage").
    redis = await startRedis({ appendfsync: 'always' });
  });
  after(async () => {
    await redis?.destroy();
    await pg?.stop();
  });

  async function freshTable(): Promise<TestDatabase> {
    const db = await pg.createDatabase();
    await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
    return db;
  }

  /** Redis settings for a server of `db`: keys of its own, failures noticed within a second. */
  const redisConfig = (db: TestDatabase, url: string) => ({
    storage: 'redis' as const,
    redisUrl: url,
    redisKeyPrefix: db.slotName,
    redisHealthCheckIntervalMs: 300,
    redisCommandTimeoutMs: 700,
    redisCircuitResetMs: 500,
  });

  test('kill -9 of the server, restarted on an empty storage folder: its logs come back from Redis, no refetch', async () => {
    const db = await freshTable();
    const folders = [
      await mkdtemp(join(tmpdir(), 'sluice-redis-a-')),
      await mkdtemp(join(tmpdir(), 'sluice-redis-b-')),
    ];
    const port = String(await freePort());
    const env = (storageDir: string) => redisServerEnv(db, redis.url, storageDir, port);
    let server = await startServerProcess(env(folders[0]!));
    await waitUntilLive(server.baseUrl);
    const follower = new CountingFollower(`${server.baseUrl}/v1/shape`, { table: 'items' });
    const writer = new Writer(db);
    try {
      await sleep(1_500);
      await server.stop('SIGKILL');
      await sleep(1_000); // writes continue while Sluice is down
      server = await startServerProcess(env(folders[1]!));
      await waitUntilLive(server.baseUrl);
      const { storage } = await fetchStatus(server.baseUrl);
      assert.deepEqual(
        { ...storage, instance: typeof storage.instance },
        {
          backend: 'redis',
          state: 'up',
          breaker: 'closed',
          instance: 'string',
          writer: storage.instance,
        },
        'the restarted server writes the storage',
      );
      await sleep(1_500);
      await writer.stop();
      await assertMatchesTable(db, follower);
      assert.equal(follower.mustRefetches, 0, 'no 409 / must-refetch');
      assert.deepEqual(follower.duplicates(), [], 'no insert delivered twice');
      assert.equal(follower.rows.size, writer.committed, 'every committed insert arrived');
      assert.ok(writer.committed > 50, `the workload ran (${writer.committed} commits)`);
    } finally {
      follower.close();
      await writer.stop();
      await server.stop('SIGKILL');
      for (const folder of folders) await rm(folder, { recursive: true, force: true });
      await db.drop();
    }
  });

  test('two servers on one Redis: kill -9 of the writer, the standby takes over; clients keep their handles', async (t) => {
    const db = await freshTable();
    const folders = [
      await mkdtemp(join(tmpdir(), 'sluice-writer-')),
      await mkdtemp(join(tmpdir(), 'sluice-standby-')),
    ];
    const env = async (storageDir: string) =>
      redisServerEnv(db, redis.url, storageDir, await freePort());
    const writer = await startServerProcess(await env(folders[0]!));
    await waitUntilLive(writer.baseUrl);
    const standby = await startServerProcess(await env(folders[1]!));
    // Clients reach the servers through one address, moved to the standby at the failover
    // (a load balancer, a virtual IP).
    const proxy = await startFaultProxy(proxyTargetOf(writer.baseUrl));
    const address = `http://127.0.0.1:${proxy.port}`;
    const follower = new CountingFollower(`${address}/v1/shape`, { table: 'items' });
    const filtered = new CountingFollower(`${address}/v1/shape`, {
      table: 'items',
      where: 'id % 3 = 0',
    });
    const writes = new Writer(db);
    try {
      // The standby does not write; it reads what the writer writes, and serves it.
      const writerId = (await fetchStatus(writer.baseUrl)).storage.instance;
      assert.ok(writerId);
      await waitFor(async () => (await fetchStatus(standby.baseUrl)).storage.writer === writerId);
      await waitUntilLive(standby.baseUrl);
      const standbyStatus = await fetchStatus(standby.baseUrl);
      assert.notEqual(standbyStatus.storage.instance, writerId);
      const served = await fetch(`${standby.baseUrl}/v1/shape?table=items&offset=-1`);
      assert.equal(served.status, 200, await served.text());
      await sleep(1_500);
      const seenBefore = follower.rows.size;
      const killedAt = Date.now();
      await writer.stop('SIGKILL');
      proxy.retarget(proxyTargetOf(standby.baseUrl));
      // The standby names itself the writer once it holds the lock.
      await waitFor(async () => {
        const { storage } = await fetchStatus(standby.baseUrl);
        return storage.writer === storage.instance;
      });
      await waitUntilLive(standby.baseUrl);
      const committed = writes.committed;
      await follower.waitFor((rows) => rows.size > Math.max(committed, seenBefore), 30_000);
      t.diagnostic(
        `first commit after the writer's death delivered ${Date.now() - killedAt} ms after it`,
      );
      await sleep(1_000);
      await writes.stop();
      await assertMatchesTable(db, follower);
      assert.equal(follower.mustRefetches, 0, 'no 409 / must-refetch');
      assert.deepEqual(follower.duplicates(), [], 'no insert delivered twice');
      assert.equal(follower.rows.size, writes.committed, 'every committed insert arrived');
      assert.equal(filtered.mustRefetches, 0, 'the filtered shape kept its handle too');
      assert.deepEqual(filtered.duplicates(), [], 'no insert delivered twice (filtered)');
      const { rows } = await db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM items WHERE id % 3 = 0',
      );
      await filtered.waitFor((seen) => seen.size === rows[0]!.n);
    } finally {
      follower.close();
      filtered.close();
      await writes.stop();
      await proxy.close();
      await writer.stop('SIGKILL');
      await standby.stop('SIGKILL');
      for (const folder of folders) await rm(folder, { recursive: true, force: true });
      await db.drop();
    }
  });

  test('retention: a shape nobody reads is removed from Redis, keys and all; its client refetches', async () => {
    const db = await freshTable();
    await db.query('INSERT INTO items SELECT g, g FROM generate_series(1, 50) g');
    const sluice = await startSluice(db, { ...redisConfig(db, redis.url), shapeIdleTimeoutS: 1 });
    const client = new Redis(redis.url);
    try {
      await waitUntilLive(sluice.baseUrl);
      const keysOf = () => client.keys(`*${db.slotName}*`);
      const first = await fetch(`${sluice.baseUrl}/v1/shape?table=items&offset=-1`);
      assert.equal(first.status, 200);
      const handle = first.headers.get('electric-handle')!;
      await first.arrayBuffer();
      const stored = await keysOf();
      assert.ok(
        stored.some((key) => key.includes(handle)),
        `the shape is in Redis: ${stored.join(' ')}`,
      );
      // Idle for over a second: the sweep (every 250 ms here) removes it. Its keys go first, then
      // its name from the set of shapes (another slot on a Cluster: two commands, not one).
      await waitFor(
        async () =>
          !(await keysOf()).some((key) => key.includes(handle)) &&
          (await client.sismember(`${db.slotName}:shapes`, handle)) === 0,
      );
      const back = await fetch(
        `${sluice.baseUrl}/v1/shape?table=items&handle=${handle}&offset=0_inf`,
      );
      assert.equal(back.status, 409, 'a client coming back is sent to a new shape');
      await back.arrayBuffer();
    } finally {
      client.disconnect();
      await sluice.close();
      await db.drop();
    }
  });

  /** An outage of Redis, caused then ended by the test. */
  interface Outage {
    name: string;
    /** Redis (or the path to it) stops answering. */
    begin(): Promise<void>;
    /** Redis answers again. */
    end(): Promise<void>;
    /** How long the outage lasts once the server has noticed it. */
    lastsMs: number;
  }

  /**
   * With `reader`, a second server shares the storage and reads it (docs/operations.md, "Several
   * servers"): the clients, and every check below, are on it; the writer must come back too.
   */
  async function outageTest(
    outage: Outage,
    redisUrl: string,
    t: { diagnostic(message: string): void },
    { reader = false } = {},
  ) {
    const db = await freshTable();
    const servers = [await startSluice(db, redisConfig(db, redisUrl))];
    await waitUntilLive(servers[0]!.baseUrl);
    if (reader) {
      servers.push(await startSluice(db, redisConfig(db, redisUrl)));
      await waitUntilLive(servers[1]!.baseUrl);
    }
    const sluice = servers.at(-1)!;
    const url = `${sluice.baseUrl}/v1/shape`;
    const follower = new CountingFollower(url, { table: 'items' });
    const writer = new Writer(db);
    try {
      await sleep(1_000);
      const began = Date.now();
      await outage.begin();
      const { body } = await waitForStatus(sluice.baseUrl, 'fallback', 15_000);
      t.diagnostic(`${outage.name}: fallback ${Date.now() - began} ms after it began`);
      assert.equal(body.storage.backend, 'redis');
      assert.equal(body.storage.state, 'down');
      // A new client during the outage gets the table's rows from Postgres, marked fallback.
      const initial = await fetch(`${url}?table=items&offset=-1`);
      assert.equal(initial.status, 200, await initial.clone().text());
      assert.equal(initial.headers.get('electric-fallback-mode'), 'true');
      await initial.arrayBuffer();
      await sleep(outage.lastsMs);
      const ended = Date.now();
      await outage.end();
      const live = await waitForStatus(sluice.baseUrl, 'live', 60_000);
      t.diagnostic(`${outage.name}: live ${Date.now() - ended} ms after it ended`);
      for (const server of servers) await waitUntilLive(server.baseUrl);
      assert.deepEqual(
        { state: live.body.storage.state, breaker: live.body.storage.breaker },
        { state: 'up', breaker: 'closed' },
      );
      await sleep(1_000);
      await writer.stop();
      await assertMatchesTable(db, follower);
      assert.deepEqual(follower.duplicates(), [], 'no insert twice since the last refetch');
      assert.deepEqual(follower.errors, [], 'no client error');
      assert.ok(writer.committed > 50, `the workload ran (${writer.committed} commits)`);
      // A client starting now is served live again, from the log.
      const fresh = await fetch(`${url}?table=items&offset=-1`);
      assert.equal(fresh.status, 200);
      assert.equal(fresh.headers.get('electric-fallback-mode'), null);
      await fresh.arrayBuffer();
    } finally {
      follower.close();
      await writer.stop();
      for (const server of servers.reverse()) await server.close();
      await db.drop();
    }
  }

  test('Redis restarted while clients follow', async (t) => {
    await outageTest(
      {
        name: 'restart',
        begin: () => redis.stop(),
        end: () => redis.start(),
        lastsMs: 1_000,
      },
      redis.url,
      t,
    );
  });

  test('Redis restarted while clients follow a reader (a second server on the storage)', async (t) => {
    await outageTest(
      {
        name: 'restart, on a reader',
        begin: () => redis.stop(),
        end: () => redis.start(),
        lastsMs: 1_000,
      },
      redis.url,
      t,
      { reader: true },
    );
  });

  test('Redis killed for 30 s during writes', async (t) => {
    await outageTest(
      {
        name: 'killed',
        begin: () => redis.kill(),
        end: () => redis.start(),
        lastsMs: 30_000,
      },
      redis.url,
      t,
    );
  });

  test('Redis black-holed (TCP up, nothing answered)', async (t) => {
    const proxy = await startFaultProxy(proxyTargetOf(redis.url));
    try {
      await outageTest(
        {
          name: 'black hole',
          begin: () => Promise.resolve(proxy.setMode('blackhole')),
          end: () => Promise.resolve(proxy.setMode('pass')),
          lastsMs: 5_000,
        },
        proxy.url(redis.url),
        t,
      );
    } finally {
      await proxy.close();
    }
  });

  test('Redis black-holed while clients follow a reader', async (t) => {
    const proxy = await startFaultProxy(proxyTargetOf(redis.url));
    try {
      await outageTest(
        {
          name: 'black hole, on a reader',
          begin: () => Promise.resolve(proxy.setMode('blackhole')),
          end: () => Promise.resolve(proxy.setMode('pass')),
          lastsMs: 5_000,
        },
        proxy.url(redis.url),
        t,
        { reader: true },
      );
    } finally {
      await proxy.close();
    }
  });
});
