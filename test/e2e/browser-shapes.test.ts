// A page following ten shapes at once in headless Chromium (docs/testing.md, "The browser test"),
// with the built @sluice/client: over its WebSocket (docs/protocol.md §12) all ten share one
// socket and get every live change; over long-polls Chromium's six HTTP/1.1 connections per
// origin are all held by the first six shapes' long-polls, and the other four cannot even load
// their rows. The page is an application's, on an origin of its own (a loopback server of the
// test's), following Sluice at its origin (CORS allows it); it loads the built client from the
// dev page's routes (SLUICE_DEV_PAGE). Needs Debian's `chromium`, as browser-page.test.ts does.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test, type TestContext } from 'node:test';
import { PARAMS, PATHS } from '@sluice/protocol';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import { chromium, type Browser, type Page } from 'playwright-core';
import {
  CHROMIUM_ARGS,
  INSTALL_HINT,
  browserSkip as skip,
  buildClient,
  chromiumPath,
} from '../support/chromium.js';
import { startSluice, type RunningSluice } from '../support/sluice-server.js';

const SHAPES = 10;
/** Chromium's connections per origin over HTTP/1.1. */
const CONNECTIONS_PER_ORIGIN = 6;
const WAIT_MS = 30_000;
/** Long enough that no held long-poll ends by itself during a test. */
const LONG_POLL_MS = 120_000;

/**
 * The application page, for a Sluice at `sluiceUrl`. `?transport=websocket|long-poll`.
 * `follow(from, to)` starts streams for shapes `from…to-1` (`items where shape = k`);
 * `shapeRows[k]` is shape k's rows as `[id, v]` pairs, by id, from its first complete data on;
 * `errors` collects stream errors.
 */
const applicationPage = (sluiceUrl: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Ten shapes</title>
<script type="importmap">
{ "imports": {
  "@sluice/client": "${sluiceUrl}/dev/client/index.js",
  "@sluice/protocol": "${sluiceUrl}/dev/protocol/index.js"
} }
</script>
<script type="module">
import { Shape, ShapeStream } from '@sluice/client';
const liveTransport = new URLSearchParams(location.search).get('transport');
window.shapeRows = {};
window.errors = [];
window.follow = (from, to) => {
  for (let k = from; k < to; k++) {
    const stream = new ShapeStream({
      url: '${sluiceUrl}${PATHS.shape}',
      params: { table: 'items', where: 'shape = ' + k },
      liveTransport,
      onError: (error) => void window.errors.push(k + ': ' + String(error)),
    });
    new Shape(stream).subscribe(({ rows }) => {
      window.shapeRows[k] = rows.map((row) => [row.id, row.v]).sort((a, b) => a[0] - b[0]);
    });
  }
};
window.ready = true;
</script></head><body>ten shapes</body></html>`;

/** Serves `html` at every path on a loopback port of its own: the application's origin. */
async function servePage(html: string): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let postgres: TestPostgres;
before(async () => {
  if (skip) return;
  postgres = await startPostgres();
  await buildClient();
});
after(async () => {
  await postgres?.stop();
});

type ShapeRows = Record<number, [number, number][] | undefined>;

async function expectedRows(db: TestDatabase): Promise<ShapeRows> {
  const { rows } = await db.query<{ id: number; shape: number; v: number }>(
    'SELECT id, shape, v FROM items ORDER BY id',
  );
  const byShape: ShapeRows = {};
  for (let k = 0; k < SHAPES; k++) byShape[k] = [];
  for (const row of rows) byShape[row.shape]?.push([row.id, row.v]);
  return byShape;
}

const pageRows = (page: Page) => page.evaluate<ShapeRows>('window.shapeRows');

/** Polls until shapes `from…to-1` on the page equal SELECT; fails with the difference. */
async function waitForShapes(page: Page, db: TestDatabase, from: number, to: number, what: string) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const [shown, expected] = [await pageRows(page), await expectedRows(db)];
    const pick = (rows: ShapeRows) =>
      Object.fromEntries(Array.from({ length: to - from }, (_, i) => [from + i, rows[from + i]]));
    if (JSON.stringify(pick(shown)) === JSON.stringify(pick(expected))) return;
    if (Date.now() > deadline) assert.deepEqual(pick(shown), pick(expected), what);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function metric(sluice: RunningSluice, name: string): Promise<number> {
  const text = await (await fetch(`${sluice.baseUrl}${PATHS.metrics}`)).text();
  const value = new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1];
  assert.ok(value !== undefined, `metric ${name}`);
  return Number(value);
}

interface Opened {
  db: TestDatabase;
  sluice: RunningSluice;
  page: Page;
  /** Shape requests the page made with `live=true`. */
  longPolls: string[];
  /** WebSockets the page opened. */
  sockets: string[];
}

/** Postgres, Sluice with its dev routes, Chromium on the ten-shape page; torn down after `body`. */
async function withPage(
  t: TestContext,
  transport: 'websocket' | 'long-poll',
  body: (opened: Opened) => Promise<void>,
): Promise<void> {
  assert.ok(chromiumPath, `SLUICE_REQUIRE_BROWSER=1 but no Chromium was found: ${INSTALL_HINT}`);
  const db = await postgres.createDatabase();
  let sluice: RunningSluice | undefined;
  let browser: Browser | undefined;
  let page: Page | undefined;
  let app: Awaited<ReturnType<typeof servePage>> | undefined;
  try {
    await db.query(`CREATE TABLE items (id int PRIMARY KEY, shape int NOT NULL, v int NOT NULL);
      INSERT INTO items SELECT g, g % ${SHAPES}, 0 FROM generate_series(1, ${5 * SHAPES}) g;`);
    sluice = await startSluice(db, { devPage: true, longPollTimeoutMs: LONG_POLL_MS });
    browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
    page = await browser.newPage();
    const opened: Opened = { db, sluice, page, longPolls: [], sockets: [] };
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (url.pathname === PATHS.shape && url.searchParams.get(PARAMS.live) === 'true')
        opened.longPolls.push(request.url());
    });
    page.on('websocket', (socket) => opened.sockets.push(socket.url()));
    app = await servePage(applicationPage(sluice.baseUrl));
    await page.goto(`${app.url}/?transport=${transport}`);
    await page.waitForFunction('window.ready === true', undefined, { timeout: WAIT_MS });
    await body(opened);
    assert.deepEqual(await page.evaluate('window.errors'), [], 'no stream error on the page');
  } catch (error) {
    if (page) t.diagnostic(`page rows: ${JSON.stringify(await pageRows(page).catch(() => '?'))}`);

    throw error;
  } finally {
    await browser?.close();
    await app?.close();
    await sluice?.close();
    await db.drop();
  }
}

test(
  'ten shapes over one WebSocket in Chromium: all ten load and follow every change',
  { skip },
  (t) =>
    withPage(t, 'websocket', async ({ db, sluice, page, longPolls, sockets }) => {
      // Six first, then four more, as the long-poll test below does.
      await page.evaluate(`window.follow(0, ${CONNECTIONS_PER_ORIGIN})`);
      await waitForShapes(page, db, 0, CONNECTIONS_PER_ORIGIN, 'the first six shapes');
      await page.evaluate(`window.follow(${CONNECTIONS_PER_ORIGIN}, ${SHAPES})`);
      await waitForShapes(page, db, 0, SHAPES, 'all ten shapes');

      // A row into every shape, each its own commit; then updates and deletes in one.
      for (let k = 0; k < SHAPES; k++) {
        await db.query('INSERT INTO items VALUES ($1, $2, 1)', [1_000 + k, k]);
      }
      await waitForShapes(page, db, 0, SHAPES, 'an insert into each shape');
      await db.query(`BEGIN; UPDATE items SET v = v + 1 WHERE id % 3 = 0;
      DELETE FROM items WHERE id % 7 = 0; UPDATE items SET shape = (shape + 1) % ${SHAPES} WHERE id % 11 = 0; COMMIT;`);
      await waitForShapes(page, db, 0, SHAPES, 'updates, deletes and rows moving between shapes');

      assert.equal(sockets.length, 1, 'the page opened one WebSocket');
      assert.equal(await metric(sluice, 'sluice_ws_sockets_open'), 1);
      assert.equal(
        await metric(sluice, 'sluice_ws_subscriptions'),
        SHAPES,
        'ten subscriptions on it',
      );
      assert.deepEqual(longPolls, [], 'no shape long-polled');
    }),
);

test(
  'ten shapes over long-polls in Chromium: six connections held, four shapes cannot load',
  { skip },
  (t) =>
    withPage(t, 'long-poll', async ({ db, sluice, page, longPolls }) => {
      await page.evaluate(`window.follow(0, ${CONNECTIONS_PER_ORIGIN})`);
      await waitForShapes(page, db, 0, CONNECTIONS_PER_ORIGIN, 'the first six shapes');
      // Every connection Chromium allows the origin now carries a held long-poll.
      const deadline = Date.now() + WAIT_MS;
      while ((await metric(sluice, 'sluice_http_long_polls_held')) < CONNECTIONS_PER_ORIGIN) {
        assert.ok(Date.now() < deadline, 'six long-polls held');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await page.evaluate(`window.follow(${CONNECTIONS_PER_ORIGIN}, ${SHAPES})`);
      for (let k = CONNECTIONS_PER_ORIGIN; k < SHAPES; k++) {
        await db.query('INSERT INTO items VALUES ($1, $2, 1)', [1_000 + k, k]);
      }
      // The server holds each long-poll for minutes: nothing frees a connection meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      const rows = await pageRows(page);
      for (let k = CONNECTIONS_PER_ORIGIN; k < SHAPES; k++) {
        assert.equal(
          rows[k],
          undefined,
          `shape ${k} has not loaded: its requests wait in Chromium`,
        );
      }
      assert.equal(
        await metric(sluice, 'sluice_http_long_polls_held'),
        CONNECTIONS_PER_ORIGIN,
        'no more than six long-polls ever reach the server',
      );
      t.diagnostic(`${longPolls.length} long-polls issued by the page, six held at the server`);
      // A change to a held shape frees one connection, and the page moves on a step at a time.
      await db.query('INSERT INTO items VALUES (2000, 0, 1)');
      await waitForShapes(page, db, 0, 1, 'the shape whose long-poll answered');
    }),
);
