// The WebSocket transport behind the shipped nginx (server/deploy/nginx.conf, docs/operations.md
// "Behind a CDN"): the upgrade passes through, the status frame and a subscription's changes
// arrive through it, and the rows equal SELECT. The snapshot is read through the same nginx.
// Needs Debian's `nginx`: skipped without it, except where SLUICE_REQUIRE_NGINX=1 or CI is set,
// where a missing nginx fails the test.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import { findNginx, NGINX_INSTALL_HINT, startNginxCache } from '../support/nginx-cache.js';
import { assertMatchesPostgres } from '../support/shape-oracle.js';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';
import {
  WsTestClient,
  isUpToDate,
  subscribeFrame,
  syncOverHttp,
  type RowsByKey,
} from '../e2e/ws-helpers.js';

const nginx = findNginx();
const required =
  process.env.SLUICE_REQUIRE_NGINX === '1' || ['1', 'true'].includes(process.env.CI ?? '');
const skip =
  nginx === undefined && !required
    ? `no nginx found; ${NGINX_INSTALL_HINT} to run the nginx WebSocket test`
    : false;
if (skip) console.warn(`ws-nginx.test.ts skipped: ${skip}`);

let postgres: TestPostgres;
before(async () => {
  if (!skip) postgres = await startPostgres();
});
after(async () => {
  await postgres?.stop();
});

const ITEMS = { table: 'items' };
const itemRows = (rows: RowsByKey) => () =>
  [...rows.rows.values()].map((row) => ({ id: Number(row.id), title: row.title ?? null }));

test(
  'nginx: a WebSocket through the shipped config follows a shape to SELECT',
  { skip },
  async () => {
    assert.ok(
      nginx,
      `SLUICE_REQUIRE_NGINX=1 or CI is set but no nginx was found: ${NGINX_INSTALL_HINT}`,
    );
    const db = await postgres.createDatabase();
    await db.query(`CREATE TABLE items (id int PRIMARY KEY, title text);
    INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 20) i;`);
    const sluice = await startSluice(db);
    const cache = await startNginxCache(nginx, new URL(sluice.baseUrl).host);
    let client: WsTestClient | undefined;
    try {
      await waitUntilLive(sluice.baseUrl);
      const sync = await syncOverHttp(`${cache.baseUrl}/v1/shape`, ITEMS);
      client = await WsTestClient.open(cache.baseUrl);
      await client.next((f) => f.type === 'status', 'the status frame through nginx');
      client.send(subscribeFrame('a', ITEMS, sync.handle, sync.offset));
      sync.rows.apply((await client.nextMessages('a')).messages);
      await db.query(`INSERT INTO items VALUES (21, 'through nginx')`);
      await db.query(`UPDATE items SET title = 'changed' WHERE id = 1`);
      for (;;) {
        const frame = await client.nextMessages('a');
        sync.rows.apply(frame.messages);
        if (isUpToDate(frame) && sync.rows.rows.get('"public"."items"/"1"')?.title === 'changed')
          break;
      }
      await assertMatchesPostgres(db, ITEMS, itemRows(sync.rows));
    } finally {
      client?.close();
      await cache.stop();
      await sluice.close();
      await db.drop();
    }
  },
);
