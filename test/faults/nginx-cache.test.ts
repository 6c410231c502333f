// The shipped nginx cache (server/deploy/nginx.conf, docs/operations.md "Behind a CDN") in front of
// Sluice through an outage, a recovery and a rotation. The cache must honour Sluice's own
// cache-control: no answer served older than its max-age plus its stale-while-revalidate, so a
// newcomer during an outage gets fallback rows as fresh as Sluice promised and /v1/status tells the
// real state within its max-age; and it must still collapse identical requests into one upstream
// request. Followers through it end equal to SELECT, on the same URL (handle, offset, cursor).
// Needs Debian's `nginx`: skipped without it, except where SLUICE_REQUIRE_NGINX=1 or CI is set,
// where a missing nginx fails the test.
import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import { startPostgres, terminateWalsender, type TestPostgres } from '@sluice/harness';
import {
  assertFallbackReply,
  fetchStatus,
  fallbackReplyRows,
  waitForStatus,
} from '../support/fallback-checks.js';
import { itemsDatabase, ITEMS } from '../support/items-scenario.js';
import { findNginx, NGINX_INSTALL_HINT, startNginxCache } from '../support/nginx-cache.js';
import { rawRequest } from '../support/raw-shape.js';
import { assertMatchesPostgres, openShape, type OpenShape } from '../support/shape-oracle.js';
import { startSluice } from '../support/sluice-server.js';
import { Writer } from '../support/table-oracle.js';

const nginx = findNginx();
const required =
  process.env.SLUICE_REQUIRE_NGINX === '1' || ['1', 'true'].includes(process.env.CI ?? '');
const skip =
  nginx === undefined && !required
    ? `no nginx found; ${NGINX_INSTALL_HINT} to run the nginx cache test`
    : false;
if (skip) console.warn(`nginx-cache.test.ts skipped: ${skip}`);

/**
 * nginx keeps expiry times in whole seconds, so an answer with `max-age=5` may be served for up to
 * 6 s after it was stored; the bounds below allow that second and a little more.
 */
const STATUS_MAX_AGE_MS = 5_000 + 1_200;
const FALLBACK_MAX_AGE_MS = 5_000 + 1_200;
/** The outage: the walsender is terminated and replication reconnects after this long. */
const OUTAGE_MS = 20_000;

/**
 * A shape nobody follows before the outage. `offset=-1` of a shape served live is the first chunk
 * of the live shape, immutable under its handle and cacheable for an hour (docs/protocol.md §5.4):
 * a newcomer on it reads the live log, stale but consistent (§7.4). Fallback rows are what must be
 * as fresh as their max-age, so the newcomers ask for this one.
 */
const NEWCOMER = { table: 'items', columns: 'id,v' };
const NEWCOMER_SPEC = { table: 'items', columns: ['id', 'v'] };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const sleepUntil = (at: number) => sleep(Math.max(0, at - Date.now()));

let postgres: TestPostgres;
before(async () => {
  if (!skip) postgres = await startPostgres();
});
after(async () => {
  await postgres?.stop();
});

/** An official client through the cache that remembers the URL of its latest request. */
interface Follower extends OpenShape {
  lastUrl(): URL | undefined;
}

function follow(url: string): Follower {
  let last: URL | undefined;
  const opened = openShape(url, {
    params: ITEMS,
    backoffOptions: { initialDelay: 100, maxDelay: 1_000, multiplier: 1.5 },
    fetchClient: (input, init) => {
      last = new URL(input instanceof Request ? input.url : String(input));
      return fetch(input, init);
    },
  });
  return { ...opened, lastUrl: () => last };
}

interface Position {
  handle: string;
  offset: string;
  cursor: string;
  live: string;
}

/** Where a follower stands: the shape parameters of its latest request. */
function position(follower: Follower): Position {
  const url = follower.lastUrl();
  assert.ok(url, 'the follower has sent a request');
  const get = (name: string) => url.searchParams.get(name) ?? '';
  return { handle: get('handle'), offset: get('offset'), cursor: get('cursor'), live: get('live') };
}

async function waitFor(what: string, done: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

test(
  'nginx cache: fresh answers through an outage, a recovery and a rotation, requests still collapsed',
  { skip, timeout: 180_000 },
  async (t: TestContext) => {
    assert.ok(
      nginx,
      `SLUICE_REQUIRE_NGINX=1 or CI is set but no nginx was found: ${NGINX_INSTALL_HINT}`,
    );
    const db = await itemsDatabase(postgres);
    const sluice = await startSluice(db, {
      longPollTimeoutMs: 2_000,
      replicationRetryMinMs: OUTAGE_MS,
      replicationRetryMaxMs: OUTAGE_MS,
      enableShapeDelete: true,
    });
    const direct = sluice.baseUrl;
    const followers: Follower[] = [];
    const writer = new Writer(db, { pauseMs: 20 });
    writer.nextId = 1_000;
    const cache = await startNginxCache(nginx, new URL(direct).host);
    const through = cache.baseUrl;
    try {
      await waitForStatus(direct, 'live');
      followers.push(follow(`${through}/v1/shape`), follow(`${through}/v1/shape`));
      // Every oracle check runs with the writer paused: while it commits every few milliseconds,
      // a client matches SELECT only at a lucky instant (it always lags by the pipeline's
      // latency), and on a loaded machine the oracle could wait its whole 20 s for one.
      await writer.pause();
      for (const follower of followers) await assertMatchesPostgres(db, ITEMS, follower.shape);

      // Identical concurrent requests are collapsed: a held long-poll (no writes meanwhile)
      // reaches Sluice once, and the others are answered from the cache when it returns.
      const { handle, offset } = position(followers[0]!);
      const cursor = String(Date.now());
      const collapsed = { table: 'items', handle, offset, live: 'true', cursor };
      const replies = await Promise.all(
        Array.from({ length: 8 }, () => rawRequest(through, collapsed)),
      );
      writer.resume();
      for (const reply of replies) assert.equal(reply.status, 200, reply.text);
      const statuses = replies.map((reply) => reply.headers.get('x-cache-status')).sort();
      assert.deepEqual(statuses, ['HIT', 'HIT', 'HIT', 'HIT', 'HIT', 'HIT', 'HIT', 'MISS']);
      const upstream = (await cache.accessLog()).filter(
        (line) => line.includes(`cursor=${cursor}`) && !line.startsWith('HIT '),
      );
      assert.equal(upstream.length, 1, `one upstream request: ${upstream.join('; ')}`);

      // The outage. /v1/status was stored by the cache just before it.
      const statusStoredAt = Date.now();
      assert.equal((await fetchStatus(through)).status, 'live');
      await terminateWalsender(db, db.slotName);
      await waitForStatus(direct, 'fallback', 3_000);

      // A first newcomer stores fallback rows in the cache; writes go on after it.
      const firstAt = Date.now();
      const first = await rawRequest(through, { ...NEWCOMER, offset: '-1' });
      const firstRows = fallbackReplyRows(first).rows.length;
      await sleep(1_000);
      await writer.pause();
      assert.ok(
        (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM items')).rows[0]!.n >
          firstRows,
        'rows were committed after the first newcomer',
      );

      // Past its max-age the cached status is not served: it says fallback, not live.
      await sleepUntil(statusStoredAt + STATUS_MAX_AGE_MS);
      assert.equal((await fetchStatus(through)).status, 'fallback', '/v1/status through nginx');

      // A newcomer past the fallback max-age gets the rows of SELECT now, not the first's.
      await sleepUntil(firstAt + FALLBACK_MAX_AGE_MS);
      const newcomer = await rawRequest(through, { ...NEWCOMER, offset: '-1' });
      await assertFallbackReply(db, newcomer, NEWCOMER_SPEC);
      assert.equal(
        (await fetchStatus(direct)).status,
        'fallback',
        'still in the outage: the test ran too slowly to show anything',
      );
      writer.resume();

      // Recovery: /v1/status through nginx says live within its max-age.
      await waitForStatus(direct, 'live', OUTAGE_MS + 15_000);
      const { elapsedMs } = await waitForStatus(through, 'live', 15_000);
      assert.ok(elapsedMs <= STATUS_MAX_AGE_MS, `live through nginx after ${elapsedMs} ms`);
      await writer.pause();
      for (const follower of followers) await assertMatchesPostgres(db, ITEMS, follower.shape);
      writer.resume();

      // A rotation: the shape is deleted and created again under a new handle.
      const before = position(followers[0]!).handle;
      const deleted = await fetch(`${direct}/v1/shape?table=items`, { method: 'DELETE' });
      assert.equal(deleted.status, 202, await deleted.text());
      for (const follower of followers) {
        await waitFor('the follower moved to the new handle', () => {
          const now = follower.lastUrl()?.searchParams.get('handle');
          return now !== null && now !== undefined && now !== before;
        });
      }
      // A follower that starts after the rotation.
      const late = follow(`${through}/v1/shape`);
      followers.push(late);

      await sleep(1_000);
      await writer.stop();
      for (const follower of followers) await assertMatchesPostgres(db, ITEMS, follower.shape);
      // The followers that started together send the same URL (so nginx collapses them); the late
      // one is at the same handle and offset. Its cursor may differ: a cursor that would not
      // advance jumps ahead at random (docs/protocol.md §5.2), and only a shared chain of
      // answers keeps two clients on the same one.
      await waitFor('the followers stand at the same place', () => {
        const [a, b] = followers.slice(0, 2).map(position);
        return JSON.stringify(a) === JSON.stringify(b) && a!.live === 'true';
      });
      await waitFor('the late follower stands at the same handle and offset', () => {
        const [a, c] = [followers[0]!, late].map(position);
        return a!.handle === c!.handle && a!.offset === c!.offset && c!.live === 'true';
      });
      for (const follower of followers)
        assert.ok(!follower.shape.error, String(follower.shape.error));

      // Answers without stale-while-revalidate (status, fallback rows) were never served stale.
      const stale = (await cache.accessLog()).filter(
        (line) =>
          /^(STALE|UPDATING) /.test(line) &&
          (line.includes('/v1/status') || line.includes('columns=')),
      );
      assert.deepEqual(stale, [], 'answers served past their max-age');
    } catch (error) {
      // What nginx did last, for a failure's diagnosis.
      t.diagnostic(`nginx access log (tail):\n${(await cache.accessLog()).slice(-40).join('\n')}`);
      throw error;
    } finally {
      for (const follower of followers) follower.close();
      await writer.stop();
      await cache.stop();
      await sluice.close();
      await db.drop();
    }
  },
);

test(
  'nginx cache: an answer to a request with the secret is never served to one without it',
  { skip },
  async () => {
    assert.ok(
      nginx,
      `SLUICE_REQUIRE_NGINX=1 or CI is set but no nginx was found: ${NGINX_INSTALL_HINT}`,
    );
    const db = await itemsDatabase(postgres);
    const sluice = await startSluice(db, { secret: 'nginx-test-secret' });
    const cache = await startNginxCache(nginx, new URL(sluice.baseUrl).host);
    try {
      await waitForStatus(sluice.baseUrl, 'live');
      const url = `${cache.baseUrl}/v1/shape?table=items&offset=-1`;
      const bearer = { authorization: 'Bearer nginx-test-secret' };
      const first = await fetch(url, { headers: bearer });
      assert.equal(first.status, 200, await first.text());
      const again = await fetch(url, { headers: bearer });
      assert.equal(again.headers.get('x-cache-status'), 'HIT', 'the secret holders share answers');
      await again.arrayBuffer();
      const anonymous = await fetch(url);
      assert.equal(anonymous.status, 401, 'no secret, no rows, even from the cache');
      await anonymous.arrayBuffer();
    } finally {
      await cache.stop();
      await sluice.close();
      await db.drop();
    }
  },
);
