// SSE live mode behind the shipped nginx cache (server/deploy/nginx.conf, docs/operations.md
// "Behind a CDN"): streams pass through unbuffered and uncached, so official clients with
// `liveSse: true` keep streaming (several batches on one connection, no fallback to long-polls)
// and, with writes going on while they stream, end equal to SELECT.
// Needs Debian's `nginx`: skipped without it, except where SLUICE_REQUIRE_NGINX=1 or CI is set,
// where a missing nginx fails the test.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import { installBrowserGlobals } from '../support/browser-globals.js';
import { waitForStatus } from '../support/fallback-checks.js';
import { ITEMS, itemsDatabase } from '../support/items-scenario.js';
import { findNginx, NGINX_INSTALL_HINT, startNginxCache } from '../support/nginx-cache.js';
import { readToEnd } from '../support/raw-shape.js';
import {
  assertMatchesPostgres,
  openShape,
  unrefClientSaveTimers,
  type OpenShape,
} from '../support/shape-oracle.js';
import { startSluice } from '../support/sluice-server.js';
import { openSse } from '../support/sse-reader.js';
import { assertNeverLongPolled, tapFetch, upToDatesIn, type FetchTap } from '../support/sse-tap.js';
import { Writer } from '../support/table-oracle.js';

unrefClientSaveTimers();
installBrowserGlobals();

const nginx = findNginx();
const required =
  process.env.SLUICE_REQUIRE_NGINX === '1' || ['1', 'true'].includes(process.env.CI ?? '');
const skip =
  nginx === undefined && !required
    ? `no nginx found; ${NGINX_INSTALL_HINT} to run the nginx SSE test`
    : false;
if (skip) console.warn(`nginx-sse.test.ts skipped: ${skip}`);

const SSE_TIMEOUT_MS = 3_000;

let postgres: TestPostgres;
before(async () => {
  if (!skip) postgres = await startPostgres();
});
after(async () => {
  await postgres?.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface SseClient extends OpenShape {
  tap: FetchTap;
}

test(
  'nginx cache: SSE streams pass through unbuffered, and SSE clients converge',
  { skip, timeout: 120_000 },
  async () => {
    assert.ok(
      nginx,
      `SLUICE_REQUIRE_NGINX=1 or CI is set but no nginx was found: ${NGINX_INSTALL_HINT}`,
    );
    const db = await itemsDatabase(postgres);
    const sluice = await startSluice(db, {
      sseTimeoutMs: SSE_TIMEOUT_MS,
      sseKeepAliveMs: 300,
    });
    const cache = await startNginxCache(nginx, new URL(sluice.baseUrl).host);
    const clients: SseClient[] = [];
    const writer = new Writer(db, { pauseMs: 20 });
    writer.nextId = 1_000;
    try {
      await waitForStatus(sluice.baseUrl, 'live');
      // A stream through nginx while caught up: its keep-alives arrive as they are sent, long
      // before the stream ends (a buffering proxy would hold them back until the end).
      await writer.pause();
      const position = await readToEnd(cache.baseUrl, ITEMS);
      const raw = await openSse(cache.baseUrl, { ...ITEMS, ...position, cursor: '' });
      const openedAt = Date.now();
      assert.equal(raw.status, 200, raw.text);
      assert.equal(raw.headers.get('content-type'), 'text/event-stream');
      assert.equal(raw.headers.get('x-cache-status'), 'BYPASS');
      await raw.ended;
      const endedAt = Date.now();
      const first = raw.items[0];
      assert.ok(first?.kind === 'comment', 'nothing but keep-alives while caught up');
      assert.ok(endedAt - openedAt >= SSE_TIMEOUT_MS - 500, 'the stream lasted its timeout');
      assert.ok(
        first.at < endedAt - 1_000,
        `the first keep-alive came ${first.at - openedAt} ms after the open, the end after ${endedAt - openedAt} ms`,
      );
      writer.resume();

      // Official clients through nginx while rows are written: several stream timeouts long.
      for (let i = 0; i < 2; i++) {
        const tap = tapFetch();
        const opened = openShape(`${cache.baseUrl}/v1/shape`, {
          params: ITEMS,
          liveSse: true,
          warnOnHttp: false,
          fetchClient: tap.fetchClient,
        });
        clients.push({ ...opened, tap });
      }
      await sleep(3 * SSE_TIMEOUT_MS);
      await writer.stop();
      for (const client of clients) await assertMatchesPostgres(db, ITEMS, client.shape);

      for (const client of clients) {
        assert.ok(!client.stream.error, String(client.stream.error));
        assertNeverLongPolled(client.tap);
        const streams = client.tap.requests.filter((r) => r.sse && r.status === 200);
        assert.ok(streams.length >= 2, `${streams.length} streams: the client reconnected`);
        for (const stream of streams) {
          assert.equal(stream.headers?.get('x-cache-status'), 'BYPASS', stream.url.search);
        }
        assert.ok(
          streams.some((r) => upToDatesIn(r) >= 2),
          `one stream carried several batches: ${streams.map(upToDatesIn).join(', ')}`,
        );
      }
    } finally {
      for (const client of clients) client.close();
      await writer.stop();
      await cache.stop();
      await sluice.close();
      await db.drop();
    }
  },
);
