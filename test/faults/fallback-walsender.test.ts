// Fallback mode when the walsender is terminated (PROTOCOL.md §7): the status leaves live at
// once, shape requests are answered from Postgres with the fallback header, the server returns to
// live by itself, and clients that followed throughout end equal to Postgres without a refetch.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPostgres, terminateWalsender, type TestPostgres } from '@sluice/harness';
import { CountingFollower } from '../support/counting-follower.js';
import { assertFallbackSnapshot, fetchStatus, waitForStatus } from '../support/fallback-checks.js';
import { rawRequest, RawFollower } from '../support/raw-shape.js';
import { assertMatchesPostgres } from '../support/shape-oracle.js';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';
import { Writer } from '../support/table-oracle.js';

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

test('walsender terminated: fallback with fresh rows, back to live, no refetch', async () => {
  const db = await pg.createDatabase();
  await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
  await db.query('INSERT INTO items SELECT g, 0 FROM generate_series(1, 50) g');
  // A long reconnect delay keeps the outage open long enough to look at it.
  const sluice = await startSluice(db, {
    replicationRetryMinMs: 4_000,
    replicationRetryMaxMs: 4_000,
    longPollTimeoutMs: 1_000,
  });
  const official = new CountingFollower(`${sluice.baseUrl}/v1/shape`, { table: 'items' });
  const raw = new RawFollower(sluice.baseUrl, { table: 'items' });
  const writer = new Writer(db, { pauseMs: 10 });
  try {
    await waitUntilLive(sluice.baseUrl);
    await assertMatchesPostgres(db, { table: 'items' }, () => [...official.rows.values()]);
    const { body: live } = await waitForStatus(sluice.baseUrl, 'live');
    assert.equal(live.replication.state, 'streaming');

    await terminateWalsender(db, db.slotName);
    const { body, elapsedMs } = await waitForStatus(sluice.baseUrl, 'fallback', 2_000);
    assert.ok(elapsedMs < 2_000, `left live in ${elapsedMs} ms`);
    assert.equal(body.replication_available, false);
    assert.equal(body.replication.state, 'backoff');
    assert.equal(body.replication.last_error?.code, '57P01');
    assert.match(body.replication.last_error?.message ?? '', /terminated/);
    assert.ok(body.replication.next_retry_at, 'next retry time shown');
    assert.equal(body.shapes.state, 'read_only');
    assert.equal(body.database.primary, 'up');

    // Rows written during the outage are served, straight from Postgres.
    await writer.pause();
    const handle = await assertFallbackSnapshot(
      db,
      sluice.baseUrl,
      { table: 'items' },
      {
        table: 'items',
      },
    );
    assert.match(handle, /-fallback-/);
    writer.resume();
    // A live request on the fallback handle is held, then says up-to-date, still in fallback.
    const held = await rawRequest(sluice.baseUrl, {
      table: 'items',
      handle,
      offset: '0_inf',
      live: 'true',
      cursor: '',
    });
    assert.equal(held.status, 200);
    assert.equal(held.headers.get('electric-fallback-mode'), 'true');

    const { elapsedMs: recoveredIn } = await waitForStatus(sluice.baseUrl, 'live', 15_000);
    assert.ok(recoveredIn < 15_000);
    // Once live, the fallback handle is sent to the live shape.
    const back = await rawRequest(sluice.baseUrl, {
      table: 'items',
      handle,
      offset: '0_inf',
      live: 'true',
      cursor: '',
    });
    assert.equal(back.status, 409);
    assert.notEqual(back.headers.get('electric-handle'), handle);
    assert.equal(back.headers.get('electric-fallback-mode'), null);

    await writer.stop();
    await assertMatchesPostgres(db, { table: 'items' }, () => [...official.rows.values()], 30_000);
    await assertMatchesPostgres(db, { table: 'items' }, () => [...raw.rows.values()], 30_000);
    assert.equal(official.mustRefetches, 0, 'official client: no 409');
    assert.deepEqual(official.duplicates(), [], 'official client: no change twice');
    assert.deepEqual(official.errors, []);
    assert.equal(raw.mustRefetches, 0, 'raw follower: no 409');
    assert.deepEqual(raw.audit.anomalies, [], 'raw follower: every change once');
    assert.equal(raw.error, undefined);

    const metrics = await (await fetch(`${sluice.baseUrl}/metrics`)).text();
    assert.match(metrics, /sluice_state_transitions_total\{from="live",to="fallback"\} 1/);
    assert.match(metrics, /sluice_state_transitions_total\{from="fallback",to="live"\} 1/);
    assert.match(metrics, /sluice_fallback_queries_total 1/);
    assert.equal((await fetchStatus(sluice.baseUrl)).status, 'live');
  } finally {
    await writer.stop();
    official.close();
    await raw.close();
    await sluice.close();
    await db.drop();
  }
});
