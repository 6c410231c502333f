// Fallback mode when the walsender is terminated (docs/protocol.md §7): the status leaves live at
// once, shape requests are answered from Postgres with the fallback header, the server returns to
// live by itself, and clients that followed throughout end equal to Postgres without a refetch.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPostgres, terminateWalsender, type TestPostgres } from '@sluice/harness';
import { waitForStatus } from '../support/fallback-checks.js';
import {
  assertClientsConverged,
  assertLiveAndFollowing,
  assertSnapshotWithWriterPaused,
  followItems,
  itemsDatabase,
} from '../support/items-scenario.js';
import { rawRequest } from '../support/raw-shape.js';

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

test('walsender terminated: fallback with fresh rows, back to live, no refetch', async () => {
  const db = await itemsDatabase(pg);
  // A long reconnect delay keeps the outage open long enough to look at it.
  const s = await followItems(db, { replicationRetryMinMs: 4_000, replicationRetryMaxMs: 4_000 });
  const base = s.sluice.baseUrl;
  try {
    await assertLiveAndFollowing(s);
    // The probe reports the slot's lag and retained WAL (numbers, not null) while live.
    const { body: live } = await waitForStatus(base, 'live');
    assert.equal(typeof live.replication.lag_bytes, 'number');
    assert.equal(typeof live.replication.retained_wal_bytes, 'number');
    const liveMetrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(liveMetrics, /^sluice_replication_lag_bytes \d+$/m);
    assert.match(liveMetrics, /^sluice_slot_retained_wal_bytes \d+$/m);
    assert.match(liveMetrics, /^sluice_state\{state="live"\} 1$/m);

    await terminateWalsender(db, db.slotName);
    const { body, elapsedMs } = await waitForStatus(base, 'fallback', 2_000);
    assert.ok(elapsedMs < 2_000, `left live in ${elapsedMs} ms`);
    assert.equal(body.replication_available, false);
    assert.equal(body.replication.state, 'backoff');
    assert.equal(body.replication.last_error?.code, '57P01');
    assert.match(body.replication.last_error?.message ?? '', /terminated/);
    assert.ok(body.replication.next_retry_at, 'next retry time shown');
    assert.equal(body.shapes.state, 'read_only');
    assert.equal(body.database.primary, 'up');

    // Rows written during the outage are served, straight from Postgres.
    const handle = await assertSnapshotWithWriterPaused(s);
    assert.match(handle, /-fallback-/);
    // A live request on the fallback handle is held until its rows may have changed: the writer
    // keeps committing, so it is sent to fresh fallback rows (a 409 naming a new fallback handle).
    const onHandle = { table: 'items', handle, offset: '0_inf', live: 'true', cursor: '' };
    const held = await rawRequest(base, onHandle);
    assert.equal(held.status, 409);
    assert.equal(held.headers.get('electric-fallback-mode'), 'true');
    assert.match(held.headers.get('electric-handle') ?? '', /-fallback-/);
    // Non-live answers carry electric-schema (without it the official client fails for good):
    // on the fallback handle, and for offset=now on a shape the server does not hold (which
    // costs it one more fallback query).
    const items = await rawRequest(base, { table: 'items', offset: '-1' });
    const schema = items.headers.get('electric-schema');
    assert.ok(schema, 'the fallback snapshot names its schema');
    assert.equal(items.headers.get('electric-has-data'), 'true');
    const caughtUp = await rawRequest(base, { table: 'items', handle, offset: '0_inf' });
    assert.equal(caughtUp.status, 200);
    assert.equal(caughtUp.headers.get('electric-schema'), schema);
    assert.equal(caughtUp.headers.get('electric-has-data'), 'false', 'nothing new on it');
    const now = await rawRequest(base, { table: 'items', where: 'id > 5', offset: 'now' });
    assert.equal(now.status, 200, now.text);
    assert.equal(now.headers.get('electric-fallback-mode'), 'true');
    assert.equal(now.headers.get('electric-schema'), schema);

    const { elapsedMs: recoveredIn } = await waitForStatus(base, 'live', 15_000);
    assert.ok(recoveredIn < 15_000);
    // Once live, the fallback handle is sent to the live shape.
    const back = await rawRequest(base, onHandle);
    assert.equal(back.status, 409);
    assert.notEqual(back.headers.get('electric-handle'), handle);
    assert.equal(back.headers.get('electric-fallback-mode'), null);

    await assertClientsConverged(s, 0);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /sluice_state_transitions_total\{from="live",to="fallback"\} 1/);
    assert.match(metrics, /sluice_state_transitions_total\{from="fallback",to="live"\} 1/);
    // The snapshot (shared by the clients and the checks above), the fresh one after the held
    // request was told its rows changed, and the offset=now shape's.
    assert.match(metrics, /sluice_fallback_queries_total 3/);
  } finally {
    await s.close();
    await db.drop();
  }
});
