// TanStack DB through a replication outage (docs/protocol.md §7.3, "Fallback rows and
// transaction ids"): no replicated change, so no `txids`, reaches a client while replication is
// down; fallback rows carry the `snapshot-end` of their own query instead, and a held request on a
// fallback handle is sent to fresh fallback rows once a transaction has ended since its rows were
// read. A collection writing during the outage must get every `awaitTxId` confirmed within its
// default 5 s, equal SELECT during and after the outage, and follow the live shape once
// replication is back. The outage: the replication connection goes through a fault proxy that
// resets it and every reconnect.
import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import { ShapeStream, type Message, type Row } from '@electric-sql/client';
import { createLiveQueryCollection, eq } from '@tanstack/db';
import {
  proxyTargetOf,
  startFaultProxy,
  startPostgres,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import { fetchStatus, fallbackReplyRows, waitForStatus } from '../support/fallback-checks.js';
import { rawRequest } from '../support/raw-shape.js';
import { unrefClientSaveTimers } from '../support/shape-oracle.js';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';
import {
  assertCollectionMatches,
  assertLiveQueryMatches,
  eventually,
  isSubsetRequest,
  itemsCollection,
  ITEMS_TABLE,
  mutateAndConfirm,
  seedItems,
  selectItems,
  writeDirectly,
  type ItemsCollectionHandle,
  type SyncMode,
} from '../support/tanstack-items.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

interface SnapshotEnd {
  control: 'snapshot-end';
  xmin: string;
  xmax: string;
  xip_list: string[];
}

/** Postgres's visibility rule for a snapshot, as TanStack DB applies it to a transaction id. */
function sees(snapshot: SnapshotEnd, txid: number): boolean {
  const xid = BigInt(txid);
  return (
    xid < BigInt(snapshot.xmin) ||
    (xid < BigInt(snapshot.xmax) && !snapshot.xip_list.includes(String(txid)))
  );
}

/** The `snapshot-end` of a fallback rows answer, checked to come right before `up-to-date`. */
function snapshotEndOf(text: string): SnapshotEnd {
  const messages = JSON.parse(text) as { headers: Record<string, unknown> }[];
  assert.equal(messages.at(-1)?.headers.control, 'up-to-date');
  const end = messages.at(-2)?.headers as unknown as SnapshotEnd;
  assert.equal(end.control, 'snapshot-end', 'snapshot-end right before up-to-date');
  assert.match(end.xmin, /^\d+$/);
  assert.match(end.xmax, /^\d+$/);
  assert.ok(end.xip_list.every((xid) => /^\d+$/.test(xid)));
  assert.equal(messages.filter((m) => m.headers.control === 'snapshot-end').length, 1);
  return end;
}

/** The first batch an official ShapeStream hands its subscribers, up to its up-to-date. */
async function firstBatch(url: string): Promise<Message<Row>[]> {
  const controller = new AbortController();
  const stream = new ShapeStream({ url, params: { table: 'items' }, signal: controller.signal });
  try {
    return await new Promise((resolve, reject) => {
      const seen: Message<Row>[] = [];
      stream.subscribe(
        (batch) => {
          seen.push(...batch);
          if (seen.some((m) => 'control' in m.headers && m.headers.control === 'up-to-date'))
            resolve(seen);
        },
        (error) => reject(error instanceof Error ? error : new Error(String(error))),
      );
    });
  } finally {
    controller.abort();
    stream.unsubscribeAll();
  }
}

interface Outage {
  db: TestDatabase;
  base: string;
  /** `${base}/v1/shape` */
  url: string;
  /** A collection of `items` the fixture closes (and checks for stream errors) at the end. */
  open: (id: string, mode?: SyncMode) => ItemsCollectionHandle;
  /** Resets the replication connection and every reconnect; resolves once in fallback. */
  stopReplication: () => Promise<void>;
  /** Lets replication reconnect; resolves once live again. */
  startReplication: () => Promise<void>;
}

/**
 * `items` (50 rows) and a Sluice whose replication connection goes through a fault proxy, live
 * at the start; collections, server, proxy and database are torn down whatever the test does.
 */
async function withOutage(body: (outage: Outage) => Promise<void>): Promise<void> {
  const db = await postgres.createDatabase();
  await db.query(`${ITEMS_TABLE}; ${seedItems(50)}`);
  const proxy = await startFaultProxy(proxyTargetOf(db.url));
  const opened: ItemsCollectionHandle[] = [];
  try {
    // The default long-poll: a held fallback request is answered on a change, not by its timeout.
    const sluice = await startSluice(db, {
      replicationDatabaseUrl: proxy.url(db.url),
      longPollTimeoutMs: 20_000,
    });
    try {
      const base = sluice.baseUrl;
      const url = `${base}/v1/shape`;
      await waitUntilLive(base);
      await body({
        db,
        base,
        url,
        open: (id, mode = 'eager') => {
          const handle = itemsCollection(db, url, mode, id);
          opened.push(handle);
          return handle;
        },
        stopReplication: async () => {
          proxy.setMode('reset');
          await waitForStatus(base, 'fallback', 15_000);
        },
        startReplication: async () => {
          proxy.setMode('pass');
          await waitForStatus(base, 'live', 20_000);
        },
      });
      for (const handle of opened) assert.deepEqual(handle.streamErrors, []);
    } finally {
      for (const handle of opened) await handle.collection.cleanup();
      await sluice.close();
    }
  } finally {
    await proxy.close();
    await db.drop();
  }
}

test('replication outage: every awaitTxId confirmed within 5 s, equal to SELECT, live again after', async (t: TestContext) => {
  await withOutage(async ({ db, base, url, open, stopReplication, startReplication }) => {
    // A collection following the live shape from before the outage.
    const earlier = open('items-earlier');
    await earlier.collection.preload();
    await assertCollectionMatches(db, earlier.collection);

    await stopReplication();

    // Fallback rows end with the snapshot-end of their own query, which sees a transaction
    // committed before it; within the cache window the same result (rows and snapshot) is shared.
    const written = await writeDirectly(
      db,
      `INSERT INTO items (id, title, n) VALUES (300, 'during the outage', 3)`,
    );
    const first = await rawRequest(base, { table: 'items', offset: '-1' });
    const firstEnd = snapshotEndOf(first.text);
    assert.ok(sees(firstEnd, written), 'the snapshot sees the write before it');
    assert.deepEqual(fallbackReplyRows(first).rows.length, (await selectItems(db)).length);
    const again = await rawRequest(base, { table: 'items', offset: '-1' });
    assert.equal(again.headers.get('electric-handle'), first.headers.get('electric-handle'));
    assert.equal(again.text, first.text, 'one cached result: the same rows and snapshot-end');

    // A later write is not covered by that snapshot; a held request on its handle is sent to
    // fresh fallback rows (409 naming a new fallback handle), whose snapshot does cover it.
    const later = await writeDirectly(db, `UPDATE items SET n = 42 WHERE id = 300`);
    assert.equal(sees(firstEnd, later), false);
    const held = await rawRequest(base, {
      table: 'items',
      handle: first.headers.get('electric-handle') ?? '',
      offset: '0_inf',
      live: 'true',
      cursor: '',
    });
    assert.equal(held.status, 409, held.text);
    assert.equal(held.headers.get('electric-fallback-mode'), 'true');
    assert.match(held.headers.get('electric-handle') ?? '', /-fallback-/);
    const fresh = await rawRequest(base, { table: 'items', offset: '-1' });
    assert.notEqual(fresh.headers.get('electric-handle'), first.headers.get('electric-handle'));
    assert.ok(sees(snapshotEndOf(fresh.text), later), 'fresh rows see the later write');

    // The official client hands the snapshot-end to its subscribers, before the up-to-date.
    const batch = await firstBatch(url);
    const controls = batch.flatMap((m) => ('control' in m.headers ? [m.headers.control] : []));
    assert.deepEqual(controls.slice(-2), ['snapshot-end', 'up-to-date']);

    // A collection started during the outage writes through it: every mutation is confirmed by
    // the default awaitTxId (a timeout would reject it), the rows equal SELECT once confirmed.
    const during = open('items-during');
    await during.collection.preload();
    await assertCollectionMatches(db, during.collection, 0);
    await mutateAndConfirm(db, during.collection, 1_000);
    await mutateAndConfirm(db, during.collection, 1_100);
    // Writes beside the collection reach it too, and their ids are confirmed.
    const beside = await writeDirectly(db, `DELETE FROM items WHERE id BETWEEN 20 AND 24`);
    assert.equal(await during.collection.utils.awaitTxId(beside), true);
    await assertCollectionMatches(db, during.collection, 0);
    // Progressive mode reads the whole shape too (after its first up-to-date): the same.
    const progressive = open('items-progressive', 'progressive');
    await assertCollectionMatches(db, progressive.collection);
    await mutateAndConfirm(db, progressive.collection, 1_300);
    await assertCollectionMatches(db, during.collection);
    const status = await fetchStatus(base);
    assert.equal(status.status, 'fallback', 'the outage lasted throughout');
    t.diagnostic(`transactions confirmed during the outage: ${during.txids.length}`);

    await startReplication();
    // Live again: changes flow with txids; both collections follow the live shape.
    await mutateAndConfirm(db, during.collection, 1_200);
    await db.query(`UPDATE items SET title = 'after' WHERE id <= 10`);
    await assertCollectionMatches(db, during.collection);
    await assertCollectionMatches(db, earlier.collection);
    await assertCollectionMatches(db, progressive.collection);
    const afterwards = await writeDirectly(db, `DELETE FROM items WHERE id = 1`);
    assert.equal(await earlier.collection.utils.awaitTxId(afterwards), true);
    assert.equal(await during.collection.utils.awaitTxId(afterwards), true);
    assert.equal(await progressive.collection.utils.awaitTxId(afterwards), true);
    await assertCollectionMatches(db, earlier.collection);
    await assertCollectionMatches(db, during.collection);
  });
});

test('on-demand mode through an outage: queries load from Postgres, mutations confirmed within 5 s', async () => {
  await withOutage(async ({ db, open, stopReplication, startReplication }) => {
    await stopReplication();
    // Started during the outage: its stream (offset=now) and its subsets read Postgres directly.
    const { collection, requests, txids } = open('items-on-demand', 'on-demand');
    // Its stream's first answer (offset=now) names the handle of fallback rows, which carries
    // their snapshot's fingerprint; its subsets then keep that handle.
    await collection.toArrayWhenReady();
    const tagged = createLiveQueryCollection((q) =>
      q.from({ item: collection }).where(({ item }) => eq(item.tag, 'tag1')),
    );
    try {
      await tagged.preload();
      await assertLiveQueryMatches(db, tagged, `WHERE tag = 'tag1' ORDER BY id`);
      assert.ok(requests.some(isSubsetRequest), 'loaded by a subset snapshot');

      // Each mutation is confirmed by the default awaitTxId; the query then equals Postgres.
      const inserted = collection.insert({ id: 800, title: 'x', n: 1, done: false, tag: 'tag1' });
      await inserted.isPersisted.promise;
      await assertLiveQueryMatches(db, tagged, `WHERE tag = 'tag1' ORDER BY id`);
      const updated = collection.update(800, (draft) => {
        draft.title = 'changed';
      });
      await updated.isPersisted.promise;
      await assertLiveQueryMatches(db, tagged, `WHERE tag = 'tag1' ORDER BY id`);
      const deleted = collection.delete(800);
      await deleted.isPersisted.promise;
      await assertLiveQueryMatches(db, tagged, `WHERE tag = 'tag1' ORDER BY id`);
      assert.equal(txids.length, 3);

      // Back to live: the collection is sent to the live shape (a 409, its subsets loaded again).
      await startReplication();
      await eventually('the stream to follow the live shape', () =>
        requests.some((request) => {
          const params = new URL(request.slice(request.indexOf(' ') + 1)).searchParams;
          return params.get('live') === 'true' && !params.get('handle')?.includes('-fallback-');
        }),
      );
      await assertLiveQueryMatches(db, tagged, `WHERE tag = 'tag1' ORDER BY id`);
      const after = collection.insert({ id: 801, title: 'y', n: 2, done: true, tag: 'tag1' });
      await after.isPersisted.promise;
      // Rows the query loaded: an update carries only changed columns (replica default), so
      // on-demand mode applies it only to a row it holds.
      await db.query(`UPDATE items SET title = 'after', tag = 'tag2' WHERE id = 1;
                      UPDATE items SET n = 99 WHERE id = 6`);
      await assertLiveQueryMatches(db, tagged, `WHERE tag = 'tag1' ORDER BY id`);
    } finally {
      await tagged.cleanup();
    }
  });
});
