// The WebSocket transport through a replication outage (docs/protocol.md §12, §7): the socket
// stays open, a status frame says `fallback` at once and every subscription has ended (nothing
// more arrives for it; a subscribe meanwhile is refused 503 `SLUICE_ERR_WS_NOT_LIVE`), a status
// frame says `live` when replication streams again, and subscribing anew on the same socket from
// the last offset delivers everything committed during the outage: the rows equal SELECT.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPostgres, terminateWalsender, type TestPostgres } from '@sluice/harness';
import type { WsStatusFrame } from '@sluice/protocol';
import { assertMatchesPostgres, withSluice } from '../support/shape-oracle.js';
import type { RowsByKey } from './ws-helpers.js';
import { WsTestClient, isUpToDate, sleep, subscribeFrame, syncOverHttp } from './ws-helpers.js';

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const SQL = `CREATE TABLE items (id int PRIMARY KEY, title text);
  INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 20) i;`;
const ITEMS = { table: 'items' };
/** Replication reconnects this long after its walsender is terminated. */
const OUTAGE_MS = 3_000;

const itemRows = (rows: RowsByKey) => () =>
  [...rows.rows.values()].map((row) => ({ id: Number(row.id), title: row.title ?? null }));

test('an outage: status frames push fallback then live; the socket stays; resume from the last offset', async () => {
  await withSluice(
    postgres,
    SQL,
    async ({ db, sluice, url }) => {
      const sync = await syncOverHttp(url, ITEMS);
      const client = await WsTestClient.open(sluice.baseUrl);
      const count = () => sync.rows.rows.size;
      try {
        const opened = await client.next<WsStatusFrame>((f) => f.type === 'status', 'status');
        assert.equal(opened.status.status, 'live');
        client.send(subscribeFrame('a', ITEMS, sync.handle, sync.offset));
        let last = (await client.nextMessages('a')).offset;
        await db.query(`INSERT INTO items VALUES (21, 'before')`);
        for (;;) {
          const frame = await client.nextMessages('a');
          sync.rows.apply(frame.messages);
          last = frame.offset;
          if (isUpToDate(frame) && count() === 21) break;
        }

        await terminateWalsender(db, db.slotName);
        const down = await client.next<WsStatusFrame>(
          (f) => f.type === 'status' && f.status.status !== 'live',
          'a status frame saying not live',
        );
        assert.equal(down.status.status, 'fallback');
        const framesAtFallback = client.frames.length;
        // Commits during the outage; a subscribe meanwhile is refused, with a code that says why.
        await db.query(`INSERT INTO items VALUES (22, 'during')`);
        await db.query(`UPDATE items SET title = 'changed during' WHERE id = 1`);
        client.send(subscribeFrame('b', ITEMS, sync.handle, last));
        const refused = await client.nextError('b');
        assert.equal(refused.status, 503);
        assert.equal(refused.code, 'SLUICE_ERR_WS_NOT_LIVE');
        assert.ok((refused.retry_after ?? 0) > 0);

        const up = await client.next<WsStatusFrame>(
          (f) => f.type === 'status' && f.status.status === 'live',
          'a status frame saying live again',
          30_000,
        );
        assert.equal(up.type, 'status');
        // Between the two status frames: nothing for the ended subscription, only b's refusal.
        const between = client.frames.slice(framesAtFallback, client.frames.indexOf(up));
        assert.deepEqual(
          between.map((f) => f.type),
          ['error'],
        );
        assert.equal(client.closeCode, undefined, 'the socket stayed open');

        // Resume on the same socket from the last offset the subscription got.
        client.send(subscribeFrame('a', ITEMS, sync.handle, last));
        await db.query(`INSERT INTO items VALUES (23, 'after')`);
        for (;;) {
          const frame = await client.nextMessages('a', 30_000);
          sync.rows.apply(frame.messages);
          if (isUpToDate(frame) && count() === 23) break;
        }
        await sleep(100);
        await assertMatchesPostgres(db, ITEMS, itemRows(sync.rows));
      } finally {
        client.close();
      }
    },
    { replicationRetryMinMs: OUTAGE_MS, replicationRetryMaxMs: OUTAGE_MS },
  );
});
