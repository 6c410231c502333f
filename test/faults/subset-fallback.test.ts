// Subset snapshots while replication is down (docs/protocol.md §3.10, §7): they are read from
// Postgres as always and marked with `electric-fallback-mode`; a stream whose shape's log is
// known to continue the slot keeps its handle, so the official client's requestSnapshot taken
// during the outage goes on live afterwards and ends equal to Postgres; a request without one
// gets a fallback handle. Every data check ends with the oracle.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ShapeStream, type ChangeMessage, type Row } from '@electric-sql/client';
import { startPostgres, terminateWalsender, type TestPostgres } from '@sluice/harness';
import { waitForStatus } from '../support/fallback-checks.js';
import {
  assertMatchesPostgres,
  postgresRows,
  sortRows,
  unrefClientSaveTimers,
  waitForRows,
  withSluice,
} from '../support/shape-oracle.js';

unrefClientSaveTimers();

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

const ITEMS = `CREATE TABLE items (id int8 PRIMARY KEY, title text, n int4);
  INSERT INTO items SELECT i, 'item ' || i, i % 10 FROM generate_series(1, 40) i;`;

test('subsets during a replication outage: from Postgres, marked, and the stream stays exact', async () => {
  await withSluice(
    pg,
    ITEMS,
    async ({ db, sluice, url, open }) => {
      const base = sluice.baseUrl;
      // A changes_only stream, live before the outage, loads rows 1..10.
      const opened = open({ params: { table: 'items' }, log: 'changes_only', offset: 'now' });
      await opened.stream.requestSnapshot({ where: 'id <= $1', params: { '1': '10' } });
      await waitForRows(opened.shape, (rows) => rows.length === 10);
      await db.query(`UPDATE items SET title = 'live' WHERE id = 3`);
      await waitForRows(opened.shape, (rows) => rows.some((r) => r.title === 'live'));

      await terminateWalsender(db, db.slotName);
      await waitForStatus(base, 'fallback', 5_000);
      // Written during the outage: only Postgres has them until replication is back.
      await db.query(`UPDATE items SET title = 'during' WHERE id IN (12, 15, 4)`);
      await db.query(`INSERT INTO items VALUES (41, 'new', 1)`);

      // Raw: a subset with no handle is answered under a fallback handle, marked.
      const query = new URLSearchParams({
        table: 'items',
        offset: '-1',
        log: 'changes_only',
        subset__where: 'id > $1',
        subset__params: '{"1":"35"}',
        subset__order_by: 'id',
      });
      const raw = await fetch(`${url}?${query.toString()}`);
      assert.equal(raw.status, 200);
      assert.equal(raw.headers.get('electric-fallback-mode'), 'true');
      assert.equal(raw.headers.get('electric-snapshot'), 'true');
      assert.match(raw.headers.get('electric-handle') ?? '', /-fallback-/);
      assert.equal(raw.headers.get('electric-offset'), '0_inf');
      const body = (await raw.json()) as { data: { value: { id: string } }[] };
      assert.deepEqual(
        body.data.map((m) => m.value.id),
        ['36', '37', '38', '39', '40', '41'],
      );
      // The held shape's handle is kept: its log continues the slot.
      const handle = opened.stream.shapeHandle!;
      const onHandle = new URLSearchParams({
        table: 'items',
        offset: opened.stream.lastOffset,
        handle,
        log: 'changes_only',
        subset__where: 'id = 12',
      });
      const held = await fetch(`${url}?${onHandle.toString()}`);
      assert.equal(held.status, 200, await held.clone().text());
      assert.equal(held.headers.get('electric-handle'), handle);
      assert.equal(held.headers.get('electric-fallback-mode'), 'true');

      // The official client, GET and POST, on streams it has not started.
      for (const method of ['GET', 'POST'] as const) {
        const controller = new AbortController();
        const stream = new ShapeStream({
          url,
          params: { table: 'items' },
          log: 'full',
          subsetMethod: method,
          signal: controller.signal,
        });
        try {
          const { data } = await stream.fetchSnapshot({ where: 'n = $1', params: { '1': '2' } });
          const values = sortRows(
            (data as ChangeMessage<Row>[]).map((m) => m.value),
            ['id'],
          );
          assert.deepEqual(values, await postgresRows(db, { table: 'items', where: 'n = 2' }));
        } finally {
          controller.abort();
        }
      }

      // requestSnapshot on the live stream, during the outage: rows 11..20, as Postgres has them.
      await opened.stream.requestSnapshot({
        where: 'id > $1 AND id <= $2',
        params: { '1': '10', '2': '20' },
      });
      await waitForRows(opened.shape, (rows) =>
        rows.some((r) => r.title === 'during' && r.id === 12n),
      );

      // Back to live: the stream goes on from where it was and ends exact for the rows it loaded
      // and the rows inserted since it started (changes_only: every change reaches it).
      await waitForStatus(base, 'live', 30_000);
      await db.query(`UPDATE items SET title = 'after' WHERE id IN (5, 13)`);
      await db.query(`DELETE FROM items WHERE id = 14`);
      await waitForRows(opened.shape, (rows) => !rows.some((r) => r.id === 14n));
      await assertMatchesPostgres(
        db,
        { table: 'items', where: 'id <= 20 OR id > 40' },
        opened.shape,
      );
    },
    // A long reconnect delay keeps the outage open long enough to look at it.
    { replicationRetryMinMs: 6_000, replicationRetryMaxMs: 6_000 },
  );
});
