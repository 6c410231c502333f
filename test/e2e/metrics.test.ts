// HTTP request metrics in /metrics (docs/operations.md, "Health, status and metrics"): requests and
// their durations by route pattern, method, status and kind, the long-polls held, the shapes and
// the bytes of their logs, the storage's health, with label values the server chooses, never the
// URL a client sent.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import { metric } from '../support/metrics.js';
import { fetchStatus, waitForStatus } from '../support/server-status.js';
import { startSluice, waitUntilLive, type RunningSluice } from '../support/sluice-server.js';
import { get, ITEMS_SQL } from './shape-http-helpers.js';

let postgres: TestPostgres;
let db: TestDatabase;
let sluice: RunningSluice;
let shapeUrl: string;
before(async () => {
  postgres = await startPostgres();
  db = await postgres.createDatabase('metrics');
  await db.query(`${ITEMS_SQL} INSERT INTO items VALUES (1, 'one'), (2, 'two');`);
  sluice = await startSluice(db, { enableShapeDelete: true, longPollTimeoutMs: 10_000 });
  shapeUrl = `${sluice.baseUrl}/v1/shape`;
  await waitUntilLive(sluice.baseUrl);
});
after(async () => {
  await sluice?.close();
  await db?.drop();
  await postgres?.stop();
});

const SHAPE = 'route="/v1/shape"';
const requests = (labels: string[]) => metric(sluice.baseUrl, 'sluice_http_requests_total', labels);
const durations = (labels: string[]) =>
  metric(sluice.baseUrl, 'sluice_http_request_duration_seconds_count', labels);
const held = () => metric(sluice.baseUrl, 'sluice_http_long_polls_held');

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('request metrics', () => {
  test('each kind of shape request is counted and timed by route, method, status and kind', async () => {
    const initial = await get(shapeUrl, { table: 'items', offset: '-1' });
    assert.equal(initial.status, 200, initial.text);
    const handle = initial.headers.get('electric-handle') ?? '';
    const offset = initial.headers.get('electric-offset') ?? '';
    const catchUp = await get(shapeUrl, { table: 'items', offset, handle });
    assert.equal(catchUp.status, 200, catchUp.text);
    assert.equal((await get(shapeUrl, { table: 'items', offset: 'now' })).status, 200);
    const stale = await get(shapeUrl, { table: 'items', offset, handle: 'no-such-handle' });
    assert.equal(stale.status, 409, stale.text);
    assert.equal((await get(shapeUrl, { offset: '-1' })).status, 400);

    const expected: [string, string, number][] = [
      ['initial', '200', 1],
      ['catch-up', '200', 1],
      ['now', '200', 1],
      ['must-refetch', '409', 1],
      // Refused before it was understood: no kind to give it.
      ['other', '400', 1],
    ];
    for (const [kind, status, count] of expected) {
      const labels = [SHAPE, 'method="GET"', `status="${status}"`, `kind="${kind}"`];
      assert.equal(await requests(labels), count, `${kind} ${status} counted`);
      assert.equal(await durations(labels), count, `${kind} ${status} timed`);
    }
    // /metrics counts itself, once a scrape has ended.
    assert.ok((await requests(['route="/metrics"', 'status="200"', 'kind="other"'])) > 0);
  });

  test('a held long-poll is gauged until it is answered, and timed for as long as it was held', async () => {
    const first = await get(shapeUrl, { table: 'items', offset: '-1' });
    const handle = first.headers.get('electric-handle') ?? '';
    const end = await get(shapeUrl, {
      table: 'items',
      offset: first.headers.get('electric-offset') ?? '',
      handle,
    });
    const offset = end.headers.get('electric-offset') ?? '';
    const labels = [SHAPE, 'status="200"', 'kind="live"'];
    const sumBefore = await metric(
      sluice.baseUrl,
      'sluice_http_request_duration_seconds_sum',
      labels,
    );

    const live = get(shapeUrl, { table: 'items', offset, handle, live: 'true' });
    await waitFor('the long-poll to be held', async () => (await held()) === 1);
    await sleep(500);
    await db.query(`INSERT INTO items VALUES (3, 'three')`);
    const answer = await live;
    assert.equal(answer.status, 200, answer.text);
    assert.equal(await held(), 0, 'answered: no longer held');
    assert.equal(await requests(labels), 1);
    const sum = await metric(sluice.baseUrl, 'sluice_http_request_duration_seconds_sum', labels);
    assert.ok(sum - sumBefore >= 0.5, `held for at least 0.5 s, timed ${sum - sumBefore} s`);
    // Every request lands in the histogram's +Inf bucket.
    assert.equal(
      await metric(sluice.baseUrl, 'sluice_http_request_duration_seconds_bucket', [
        ...labels,
        'le="+Inf"',
      ]),
      1,
    );
  });

  test('a long-poll whose client goes away stops being held at once and counts as 499', async () => {
    const first = await get(shapeUrl, { table: 'items', offset: '-1' });
    const handle = first.headers.get('electric-handle') ?? '';
    const end = await get(shapeUrl, {
      table: 'items',
      offset: first.headers.get('electric-offset') ?? '',
      handle,
    });
    const offset = end.headers.get('electric-offset') ?? '';
    const abort = new AbortController();
    const live = get(
      shapeUrl,
      { table: 'items', offset, handle, live: 'true' },
      {
        signal: abort.signal,
      },
    ).catch((error: unknown) => error);
    await waitFor('the long-poll to be held', async () => (await held()) === 1);
    abort.abort();
    await live;
    // Well before the 10 s long-poll timeout.
    await waitFor('the gauge to go down', async () => (await held()) === 0);
    await waitFor(
      'the abandoned request to be counted',
      async () => (await requests([SHAPE, 'status="499"', 'kind="live"'])) === 1,
    );
  });

  test('shapes and the bytes of their logs are gauged; a deletion is its own kind', async () => {
    assert.equal(await metric(sluice.baseUrl, 'sluice_shapes'), 1);
    assert.ok((await metric(sluice.baseUrl, 'sluice_shape_log_bytes')) > 0);
    const deleted = await fetch(`${shapeUrl}?table=items`, { method: 'DELETE' });
    assert.equal(deleted.status, 202);
    assert.equal(await requests([SHAPE, 'method="DELETE"', 'status="202"', 'kind="delete"']), 1);
    assert.equal(await metric(sluice.baseUrl, 'sluice_shapes'), 0);
    assert.equal(await metric(sluice.baseUrl, 'sluice_shape_log_bytes'), 0);
  });

  test('the storage is gauged and shown in /v1/status: the local disk, up, no breaker', async () => {
    assert.equal(await metric(sluice.baseUrl, 'sluice_storage_up', ['backend="disk"']), 1);
    const breaker = ['backend="disk"'];
    assert.equal(await metric(sluice.baseUrl, 'sluice_storage_breaker_state', breaker), 0);
    const text = await (await fetch(`${sluice.baseUrl}/metrics`)).text();
    const series = text.split('\n').filter((line) => line.startsWith('sluice_storage_'));
    assert.equal(series.length, 2, 'one series each, for the backend in use');
    const { storage } = await fetchStatus(sluice.baseUrl);
    assert.deepEqual(storage, {
      backend: 'disk',
      state: 'up',
      breaker: 'closed',
      instance: null,
      writer: null,
    });
  });

  test('label values are bounded: unknown URLs share one series and never appear', async () => {
    const marker = 'zz-metrics-marker';
    for (let i = 0; i < 20; i++) {
      const reply = await fetch(`${sluice.baseUrl}/${marker}-${i}/../x?${marker}=${i}`);
      assert.equal(reply.status, 404);
      await reply.arrayBuffer();
    }
    await fetch(`${sluice.baseUrl}/v1/shape`, { method: 'PATCH' }).then((r) => r.arrayBuffer());
    const preflight = await fetch(`${sluice.baseUrl}/v1/shape?${marker}`, {
      method: 'OPTIONS',
      headers: { origin: 'https://example.com', 'access-control-request-method': 'GET' },
    });
    assert.equal(preflight.status, 204);
    const text = await (await fetch(`${sluice.baseUrl}/metrics`)).text();
    assert.ok(!text.includes(marker), 'no label holds a URL a client sent');
    assert.equal(await requests(['route="unmatched"', 'status="404"', 'method="GET"']), 20);
    assert.equal(await requests(['route="unmatched"', 'method="PATCH"']), 1);
    assert.equal(await requests(['route="*"', 'method="OPTIONS"', 'status="204"']), 1);
  });
});

describe('fallback answers', () => {
  test('a shape answer in fallback mode is of kind fallback', async () => {
    // With SLUICE_PUBLISH=manual and no publication, replication cannot start: fallback rows.
    const other = await postgres.createDatabase('metrics_fb');
    await other.query(`${ITEMS_SQL} INSERT INTO items VALUES (1, 'one');`);
    const degraded = await startSluice(other, { publish: 'manual' });
    try {
      await waitForStatus(degraded.baseUrl, 'fallback', 30_000);
      const reply = await get(`${degraded.baseUrl}/v1/shape`, { table: 'items', offset: '-1' });
      assert.equal(reply.status, 200, reply.text);
      assert.equal(reply.headers.get('electric-fallback-mode'), 'true');
      const labels = [SHAPE, 'status="200"', 'kind="fallback"'];
      assert.equal(await metric(degraded.baseUrl, 'sluice_http_requests_total', labels), 1);
    } finally {
      await degraded.close();
      await other.drop();
    }
  });
});
