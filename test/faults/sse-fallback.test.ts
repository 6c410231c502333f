// SSE live mode through a replication outage (docs/protocol.md §3.9, §7.3): official clients with
// `liveSse: true` keep streaming while Sluice is in fallback mode. A client that followed before
// the outage is streamed its shape's log, read-only and marked fallback; one that starts during
// the outage gets fallback rows and is held on its fallback handle; once replication is back both
// are live again. Writes go on throughout; at the end both clients equal SELECT, and neither fell
// back to long-polling nor failed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPostgres, terminateWalsender, type TestPostgres } from '@sluice/harness';
import { installBrowserGlobals } from '../support/browser-globals.js';
import { waitForStatus } from '../support/fallback-checks.js';
import { ITEMS, itemsDatabase } from '../support/items-scenario.js';
import {
  assertMatchesPostgres,
  openShape,
  unrefClientSaveTimers,
  type OpenShape,
} from '../support/shape-oracle.js';
import { startSluice } from '../support/sluice-server.js';
import { assertNeverLongPolled, tapFetch, upToDatesIn, type FetchTap } from '../support/sse-tap.js';
import { Writer } from '../support/table-oracle.js';

unrefClientSaveTimers();
installBrowserGlobals();

/** Replication reconnects this long after the walsender is terminated. */
const OUTAGE_MS = 8_000;

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, done: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(25);
  }
}

interface SseClient extends OpenShape {
  tap: FetchTap;
}

function followWithSse(url: string): SseClient {
  const tap = tapFetch();
  const opened = openShape(url, {
    params: ITEMS,
    liveSse: true,
    warnOnHttp: false,
    backoffOptions: { initialDelay: 100, maxDelay: 1_000, multiplier: 1.5 },
    fetchClient: tap.fetchClient,
  });
  return { ...opened, tap };
}

const fallbackStreams = (client: SseClient) =>
  client.tap.requests.filter(
    (r) => r.sse && r.status === 200 && r.headers?.get('electric-fallback-mode') === 'true',
  );

test('SSE clients through a replication outage: streamed read-only, then live, rows equal SELECT', async () => {
  const db = await itemsDatabase(pg);
  const sluice = await startSluice(db, {
    longPollTimeoutMs: 2_000,
    sseTimeoutMs: 4_000,
    sseKeepAliveMs: 300,
    replicationRetryMinMs: OUTAGE_MS,
    replicationRetryMaxMs: OUTAGE_MS,
  });
  const url = `${sluice.baseUrl}/v1/shape`;
  const clients: SseClient[] = [];
  const writer = new Writer(db, { pauseMs: 20 });
  writer.nextId = 1_000;
  try {
    await waitForStatus(sluice.baseUrl, 'live');
    const before = followWithSse(url);
    clients.push(before);
    await assertMatchesPostgres(db, ITEMS, before.shape);
    await waitFor('a stream carries changes', () =>
      before.tap.requests.some((r) => r.sse && upToDatesIn(r) >= 2),
    );

    await terminateWalsender(db, db.slotName);
    await waitForStatus(sluice.baseUrl, 'fallback', 3_000);
    // A newcomer during the outage: fallback rows, then held on its fallback handle.
    const during = followWithSse(url);
    clients.push(during);
    await waitFor('the newcomer holds a fallback handle over SSE', () =>
      during.tap.requests.some(
        (r) => r.sse && /-fallback-/.test(r.url.searchParams.get('handle') ?? ''),
      ),
    );
    // The client that followed before the outage is streamed its shape's log, marked fallback.
    await waitFor('a fallback stream', () => fallbackStreams(before).length > 0);
    assert.equal(
      (await waitForStatus(sluice.baseUrl, ['fallback', 'live'])).body.status,
      'fallback',
      'still in the outage: the test ran too slowly to show anything',
    );

    await waitForStatus(sluice.baseUrl, 'live', OUTAGE_MS + 15_000);
    // Writes after the outage reach both clients live.
    await sleep(1_000);
    await writer.stop();
    for (const client of clients) await assertMatchesPostgres(db, ITEMS, client.shape, 30_000);
    await waitFor('the newcomer streams the live shape', () =>
      during.tap.requests.some(
        (r) =>
          r.sse &&
          r.status === 200 &&
          !/-fallback-/.test(r.url.searchParams.get('handle') ?? '') &&
          r.headers?.get('electric-fallback-mode') === null,
      ),
    );
    for (const client of clients) {
      assert.ok(!client.stream.error, String(client.stream.error));
      assertNeverLongPolled(client.tap);
    }
    // Fallback streams are event streams too, with the fallback headers.
    for (const stream of fallbackStreams(before)) {
      assert.equal(stream.headers?.get('cache-control'), 'public, max-age=5');
      assert.doesNotMatch(stream.body, /^\[/, 'no JSON body on a stream');
    }
  } finally {
    for (const client of clients) client.close();
    await writer.stop();
    await sluice.close();
    await db.drop();
  }
});
