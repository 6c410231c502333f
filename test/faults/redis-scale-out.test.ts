// Scaling out on one Redis (issue 17): three Sluice server processes share one Redis storage and
// one Postgres slot behind the shipped nginx config (server/deploy/nginx.conf, one `server` line
// each in its upstream), the first started the writer, the others readers. Official-client and
// @sluice/client followers (long-poll and WebSocket) go through nginx, which spreads their
// requests over the three; an official-client follower sits directly on each reader. A writer
// commits throughout; the writing server is killed with SIGKILL in the middle of it. A reader
// takes the lock, and every follower ends equal to SELECT with no 409, no change twice and every
// committed insert delivered. The time from the kill to the first new commit delivered is printed
// and must stay under the 10 s.
// Needs Redis (redisSkipReason) and Debian's `nginx`: skipped without nginx, except where
// SLUICE_REQUIRE_NGINX=1 or CI is set, where a missing nginx fails the test.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { freePort } from '@sluice/local-postgres';
import {
  redisSkipReason,
  startPostgres,
  startRedis,
  type TestDatabase,
  type TestPostgres,
  type TestRedis,
} from '@sluice/harness';
import type { Row } from '@electric-sql/client';
import { redisServerEnv } from '../support/redis-server-env.js';
import { CountingFollower } from '../support/counting-follower.js';
import { metric } from '../support/metrics.js';
import { findNginx, NGINX_INSTALL_HINT, startNginxCache } from '../support/nginx-cache.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { fetchStatus } from '../support/server-status.js';
import { assertMatchesPostgres, type ShapeSpec } from '../support/shape-oracle.js';
import { SluiceFollower } from '../support/sluice-follower.js';
import { waitUntilLive } from '../support/sluice-server.js';
import { Writer } from '../support/table-oracle.js';
import { tapWebSockets } from '../support/web-socket-tap.js';

const nginx = findNginx();
const required =
  process.env.SLUICE_REQUIRE_NGINX === '1' || ['1', 'true'].includes(process.env.CI ?? '');
const skip =
  redisSkipReason() ??
  (nginx === undefined && !required
    ? `no nginx found; ${NGINX_INSTALL_HINT} to run the scale-out test`
    : false);
if (skip) console.warn(`redis-scale-out.test.ts skipped: ${skip}`);

/** The target: clients see new commits again within 10 s of the writer's death. */
const TAKEOVER_TARGET_MS = 10_000;

const WHOLE: ShapeSpec = { table: 'items' };
const FILTERED: ShapeSpec = { table: 'items', where: 'id % 3 = 0' };

const SHAPE_ROUTE = ['route="/v1/shape"', 'method="GET"'];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `${what}: not within ${timeoutMs} ms`);
    await sleep(10);
  }
}

let pg: TestPostgres;
let redis: TestRedis;
before(async () => {
  if (skip) return;
  pg = await startPostgres();
  // `always`: what the writer acknowledged to the slot survives in Redis (operations.md).
  redis = await startRedis({ appendfsync: 'always' });
});
after(async () => {
  await redis?.destroy();
  await pg?.stop();
});

/** A follower of either client, as the oracle and the takeover clock read it. */
interface Followed {
  name: string;
  spec: ShapeSpec;
  readonly rows: () => readonly Row[];
  /** Changes delivered twice, inserts missing before an update, and the like. */
  readonly anomalies: () => string[];
  readonly mustRefetches: () => number;
  readonly errors: () => unknown[];
  readonly close: () => void;
}

function official(name: string, baseUrl: string, spec: ShapeSpec): Followed {
  const follower = new CountingFollower(`${baseUrl}/v1/shape`, {
    table: spec.table,
    ...(spec.where ? { where: spec.where } : {}),
  });
  return {
    name,
    spec,
    rows: () => [...follower.rows.values()],
    anomalies: () => follower.duplicates().map((key) => `insert of ${key} delivered twice`),
    mustRefetches: () => follower.mustRefetches,
    errors: () => follower.errors,
    close: () => follower.close(),
  };
}

function sluice(
  name: string,
  baseUrl: string,
  spec: ShapeSpec,
  transport: 'long-poll' | 'websocket',
): Followed {
  const follower = new SluiceFollower(`${baseUrl}/v1/shape`, {
    params: { table: spec.table, ...(spec.where ? { where: spec.where } : {}) },
    liveTransport: transport,
    // A tap each: each socket is its own (the client shares one per constructor and URL), so
    // nginx may place them on different servers.
    ...(transport === 'websocket' ? { webSocket: tapWebSockets().WebSocket } : {}),
  });
  return {
    name,
    spec,
    rows: () => follower.rows,
    anomalies: () => follower.audit.anomalies,
    mustRefetches: () => follower.mustRefetches,
    errors: () => follower.errors,
    close: () => follower.close(),
  };
}

test(
  'three servers on one Redis behind nginx: kill -9 of the writer during writes, another takes over; every follower ends equal to SELECT',
  { skip },
  async (t) => {
    assert.ok(
      nginx,
      `SLUICE_REQUIRE_NGINX=1 or CI is set but no nginx was found: ${NGINX_INSTALL_HINT}`,
    );
    const db: TestDatabase = await pg.createDatabase();
    await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
    const folders: string[] = [];
    const servers: ServerProcess[] = [];
    const followers: Followed[] = [];
    let cache: Awaited<ReturnType<typeof startNginxCache>> | undefined;
    let writes: Writer | undefined;
    const start = async () => {
      const folder = await mkdtemp(join(tmpdir(), 'sluice-scale-out-'));
      folders.push(folder);
      const server = await startServerProcess(
        redisServerEnv(db, redis.url, folder, await freePort()),
      );
      servers.push(server);
      return server;
    };
    try {
      // The first one up holds the replication lock: the writer.
      const writer = await start();
      await waitUntilLive(writer.baseUrl);
      const readers = await Promise.all([start(), start()]);
      for (const server of servers) await waitUntilLive(server.baseUrl);
      const writerId = (await fetchStatus(writer.baseUrl)).storage.instance;
      assert.ok(writerId, 'the writer names itself');
      for (const server of servers) {
        const health = await fetch(`${server.baseUrl}/v1/health`);
        assert.equal(health.status, 200, `${server.baseUrl}/v1/health: ${await health.text()}`);
        await waitFor(
          `${server.baseUrl} names the writer`,
          async () => (await fetchStatus(server.baseUrl)).storage.writer === writerId,
        );
      }
      const instances = await Promise.all(
        servers.map(async (server) => (await fetchStatus(server.baseUrl)).storage.instance),
      );
      assert.equal(new Set(instances).size, 3, `three instances: ${instances.join(', ')}`);

      cache = await startNginxCache(
        nginx,
        servers.map((server) => new URL(server.baseUrl).host),
      );
      const via = cache.baseUrl;
      writes = new Writer(db);
      followers.push(
        official('official via nginx', via, WHOLE),
        official('official via nginx, filtered', via, FILTERED),
        sluice('@sluice/client long-poll via nginx', via, WHOLE, 'long-poll'),
        sluice('@sluice/client WebSocket via nginx', via, WHOLE, 'websocket'),
        sluice('@sluice/client WebSocket via nginx, filtered', via, FILTERED, 'websocket'),
        ...readers.map((reader, i) =>
          official(`official on reader ${i + 1}`, reader.baseUrl, WHOLE),
        ),
      );
      // Everyone follows live for a while before the writer dies.
      await waitFor('every follower has rows', () =>
        followers.every((follower) => follower.rows().length > 0),
      );
      await sleep(1_500);
      // nginx spreads the followers: the writer, which no follower reaches directly, serves some
      // of them (their requests held there when it dies), and so do the readers.
      const shapeRequests = await Promise.all(
        servers.map((server) => metric(server.baseUrl, 'sluice_http_requests_total', SHAPE_ROUTE)),
      );
      const sockets = await Promise.all(
        servers.map((server) => metric(server.baseUrl, 'sluice_ws_sockets_open')),
      );
      t.diagnostic(
        `shape requests served by writer, reader 1, reader 2: ${shapeRequests.join(', ')}; WebSockets open on each: ${sockets.join(', ')}`,
      );
      assert.ok(shapeRequests[0]! > 0, 'nginx sent shape requests to the writer');
      assert.equal(
        sockets.reduce((a, b) => a + b, 0),
        2,
        'both WebSockets are open through nginx',
      );

      // The first commit begun after the kill has an id above any in flight at the kill.
      const killedAt = Date.now();
      const firstNewId = writes.nextId + 1;
      await writer.stop('SIGKILL');
      let newWriter: string | undefined;
      await waitFor('a reader names itself the writer', async () => {
        for (const reader of readers) {
          const { storage } = await fetchStatus(reader.baseUrl);
          if (storage.writer === storage.instance) newWriter = storage.instance ?? undefined;
        }
        return newWriter !== undefined;
      });
      const tookOverMs = Date.now() - killedAt;
      let deliveredTo = '';
      await waitFor(
        'a commit after the kill delivered',
        () => {
          const first = followers.find((follower) =>
            follower.rows().some((row) => Number(row.id) >= firstNewId),
          );
          deliveredTo = first?.name ?? '';
          return first !== undefined;
        },
        30_000,
      );
      const deliveredMs = Date.now() - killedAt;
      t.diagnostic(
        `writer killed: a reader took the lock after ${tookOverMs} ms; the first new commit reached a follower (${deliveredTo}) ${deliveredMs} ms after the kill`,
      );
      assert.ok(
        deliveredMs < TAKEOVER_TARGET_MS,
        `first new commit delivered ${deliveredMs} ms after the kill (target ${TAKEOVER_TARGET_MS} ms)`,
      );
      for (const reader of readers) {
        await waitFor(
          `${reader.baseUrl} names the new writer`,
          async () => (await fetchStatus(reader.baseUrl)).storage.writer === newWriter,
        );
      }

      await sleep(2_000);
      await writes.stop();
      assert.ok(writes.committed > 50, `the workload ran (${writes.committed} commits)`);
      for (const follower of followers) {
        await assertMatchesPostgres(db, follower.spec, follower.rows, 30_000);
        assert.equal(follower.mustRefetches(), 0, `${follower.name}: no 409 / must-refetch`);
        assert.deepEqual(follower.anomalies(), [], `${follower.name}: every change exactly once`);
        assert.deepEqual(follower.errors(), [], `${follower.name}: no client error`);
        if (!follower.spec.where) {
          // The writer only inserts and updates: one row per committed insert.
          assert.equal(
            follower.rows().length,
            writes.committed,
            `${follower.name}: every committed insert arrived`,
          );
        }
      }
    } finally {
      for (const follower of followers) follower.close();
      await writes?.stop();
      await cache?.stop();
      for (const server of servers) await server.stop('SIGKILL');
      for (const folder of folders) await rm(folder, { recursive: true, force: true });
      await db.drop();
    }
  },
);
