// The browser test (docs/testing.md): the development page (server/src/dev/dev-page.ts) in
// headless Chromium, following `items` with the built @sluice/client. A row inserted in Postgres
// appears on the page; while replication is down (walsender terminated, reconnects refused) the
// banner says fallback, then live again; at the end the page's rows equal SELECT in Postgres.
// Needs Debian's `chromium` (driven by playwright-core): skipped without it, except where
// SLUICE_REQUIRE_BROWSER=1 (CI), where a missing browser fails the test.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import {
  proxyTargetOf,
  startFaultProxy,
  startPostgres,
  terminateWalsender,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import { chromium, type Browser, type Page } from 'playwright-core';
import {
  CHROMIUM_ARGS,
  INSTALL_HINT,
  browserSkip as skip,
  buildClient,
  chromiumPath,
} from '../support/chromium.js';
import { waitForStatus } from '../support/fallback-checks.js';
import { itemsDatabase } from '../support/items-scenario.js';
import { startSluice } from '../support/sluice-server.js';

const WAIT_MS = 30_000;

interface PageRow {
  key: string;
  id: string;
  v: string;
}

/** The rows the page shows, cells as displayed, in key order. */
const READ_PAGE_ROWS = `[...document.querySelectorAll('#rows tbody tr')].map((tr) => ({
  key: tr.dataset.key,
  ...Object.fromEntries([...tr.cells].map((td) => [td.dataset.column, td.textContent])),
}))`;

async function pageRows(page: Page): Promise<PageRow[]> {
  return inKeyOrder(await page.evaluate<PageRow[]>(READ_PAGE_ROWS));
}

function inKeyOrder(rows: PageRow[]): PageRow[] {
  return rows.sort((a, b) => a.key.localeCompare(b.key, 'en', { numeric: true }));
}

/** `items` in Postgres as the page should show it. */
async function postgresItems(db: TestDatabase): Promise<PageRow[]> {
  const { rows } = await db.query<{ id: string; v: string | null }>(
    'SELECT id::text AS id, v::text AS v FROM items',
  );
  return inKeyOrder(
    rows.map((row) => ({ key: `"public"."items"/"${row.id}"`, id: row.id, v: row.v ?? 'NULL' })),
  );
}

/** Polls until the page shows exactly the rows of `items` in Postgres; fails with the difference. */
async function waitForPostgresRows(page: Page, db: TestDatabase, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const [shown, expected] = [await pageRows(page), await postgresItems(db)];
    if (isDeepStrictEqual(shown, expected)) return;
    if (Date.now() > deadline) assert.deepEqual(shown, expected, `${what}: page rows = SELECT`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function waitForMode(page: Page, mode: 'live' | 'fallback'): Promise<void> {
  await page.waitForSelector(`#mode[data-mode="${mode}"]`, { timeout: WAIT_MS });
}

test(
  'dev page in Chromium: rows appear live, the banner shows fallback during an outage and live after it',
  { skip },
  async (t: TestContext) => {
    assert.ok(chromiumPath, `SLUICE_REQUIRE_BROWSER=1 but no Chromium was found: ${INSTALL_HINT}`);
    const cleanups: (() => Promise<unknown>)[] = [];
    const browserLog: string[] = [];
    let page: Page | undefined;
    let since = Date.now();
    /** How long each step took, for the log (nothing asserts it). */
    const took = (step: string) => {
      t.diagnostic(`${step}: ${Date.now() - since} ms`);
      since = Date.now();
    };
    try {
      await buildClient();
      const pg: TestPostgres = await startPostgres();
      cleanups.push(() => pg.stop());
      const db = await itemsDatabase(pg);
      cleanups.push(() => db.drop());
      const proxy = await startFaultProxy(proxyTargetOf(db.url));
      cleanups.push(() => proxy.close());
      // SLUICE_DEV_PAGE on; short holds, so the client's next request, which tells it the mode,
      // comes soon.
      const sluice = await startSluice(db, {
        devPage: true,
        replicationDatabaseUrl: proxy.url(db.url),
        replicationRetryMinMs: 500,
        replicationRetryMaxMs: 1_000,
        longPollTimeoutMs: 1_000,
      });
      cleanups.push(() => sluice.close());
      await waitForStatus(sluice.baseUrl, 'live');
      took('Postgres and Sluice started');

      const browser: Browser = await chromium.launch({
        executablePath: chromiumPath,
        args: CHROMIUM_ARGS,
      });
      cleanups.push(() => browser.close());
      page = await browser.newPage();
      page.on('console', (message) =>
        browserLog.push(`console.${message.type()}: ${message.text()}`),
      );
      page.on('pageerror', (error) => browserLog.push(`page error: ${error.message}`));

      const response = await page.goto(`${sluice.baseUrl}/?table=items`);
      assert.equal(response?.status(), 200, 'the page is served');
      await waitForMode(page, 'live');
      await page.waitForSelector('#rows[data-row-count="50"]', { timeout: WAIT_MS });
      await waitForPostgresRows(page, db, 'initial rows');
      took('Chromium started, page shows the rows, live');

      // A row inserted in Postgres appears.
      await db.query('INSERT INTO items VALUES (1001, 1)');
      await waitForPostgresRows(page, db, 'after an insert');
      took('inserted row shown');

      // The outage: the walsender is terminated and every reconnect refused until the proxy passes.
      await terminateWalsender(db, db.slotName);
      proxy.setMode('reset');
      await waitForStatus(sluice.baseUrl, 'fallback', WAIT_MS);
      await waitForMode(page, 'fallback');
      took('outage: banner says fallback');
      // Written during the outage: it must arrive once replication is back.
      await db.query('UPDATE items SET v = 2 WHERE id = 1; INSERT INTO items VALUES (1002, 2)');

      proxy.setMode('pass');
      await waitForStatus(sluice.baseUrl, 'live', WAIT_MS);
      await waitForMode(page, 'live');
      took('replication back: banner says live');
      await waitForPostgresRows(page, db, 'after the outage');

      // Still following live afterwards.
      await db.query('DELETE FROM items WHERE id = 2; INSERT INTO items VALUES (1003, 3)');
      await waitForPostgresRows(page, db, 'live again');
      took('changes from during and after the outage shown');
      assert.equal(await page.getAttribute('#rows', 'data-row-count'), '52');
      assert.equal(await page.isHidden('#error'), true, 'the page shows no stream error');
      assert.deepEqual(
        browserLog.filter((line) => line.startsWith('page error')),
        [],
        'no uncaught error in the page',
      );
    } catch (error) {
      if (page) {
        const banner = await page.textContent('#mode').catch(() => '?');
        const shownError = await page.textContent('#error').catch(() => '?');
        t.diagnostic(`banner: ${banner}; error line: ${shownError}`);
      }
      for (const line of browserLog) t.diagnostic(line);
      throw error;
    } finally {
      for (const cleanup of cleanups.reverse()) await cleanup();
    }
  },
);
