// TanStack DB (`@tanstack/db` with `@tanstack/electric-db-collection`, over the official
// @electric-sql/client) against a real Sluice and Postgres, in its three sync modes: `eager`
// (the whole shape), `on-demand` (live queries load subset snapshots: predicates, ordering,
// limits, pages) and `progressive` (subset snapshots first, then the whole shape). Optimistic
// mutations are written to Postgres by the collection's handlers and confirmed through
// `awaitTxId` at its default 5 s timeout, which needs `txids` on every replicated change and a
// correct `snapshot-end` after every snapshot. Every test ends with the oracle: the collection
// (or the live query) equals the same query run in Postgres.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  and,
  createLiveQueryCollection,
  eq,
  gt,
  gte,
  inArray,
  isNull,
  like,
  lt,
  not,
  or,
} from '@tanstack/db';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import { unrefClientSaveTimers, withSluice } from '../support/shape-oracle.js';
import {
  assertCollectionMatches,
  assertLiveQueryMatches,
  isSubsetRequest,
  itemsCollection,
  ITEMS_TABLE,
  mutateAndConfirm,
  seedItems,
  selectItems,
  writeDirectly,
} from '../support/tanstack-items.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const SEEDED = `${ITEMS_TABLE}; ${seedItems(60)}`;

describe('eager mode', () => {
  test('the whole shape, live changes from Postgres, mutations confirmed by txid', async () => {
    await withSluice(postgres, SEEDED, async ({ db, url }) => {
      const { collection, txids, streamErrors } = itemsCollection(db, url, 'eager');
      try {
        await collection.preload();
        await assertCollectionMatches(db, collection);

        // Changes made beside the collection arrive live, and awaitTxId resolves for them by
        // their txids: the initial snapshot's snapshot-end does not cover later transactions.
        const txid = await writeDirectly(
          db,
          `INSERT INTO items (id, title, n, tag) VALUES (500, 'direct', 5, 'tag0')`,
        );
        assert.equal(await collection.utils.awaitTxId(txid), true);
        assert.equal(collection.get(500)?.title, 'direct', 'synced once its txid is seen');
        await db.query(`UPDATE items SET n = n + 100 WHERE id <= 5;
                        DELETE FROM items WHERE id BETWEEN 10 AND 14;
                        UPDATE items SET tag = NULL, done = NOT done WHERE id = 500`);
        await assertCollectionMatches(db, collection);

        await mutateAndConfirm(db, collection, 1_000);
        assert.equal(new Set(txids).size, txids.length, 'one transaction per mutation batch');
        // A transaction id nobody committed is never confirmed: the wait really waits for it.
        await assert.rejects(collection.utils.awaitTxId(txids.at(-1)! + 1_000, 300), /Timeout/i);
        assert.deepEqual(streamErrors, []);
        await assertCollectionMatches(db, collection);
      } finally {
        await collection.cleanup();
      }
    });
  });
});

describe('on-demand mode', () => {
  test('live queries load subsets: predicates, ordering, limits, pages; live changes keep them equal', async () => {
    await withSluice(postgres, SEEDED, async ({ db, url }) => {
      const { collection, streamErrors, requests } = itemsCollection(db, url, 'on-demand');
      const queries: { cleanup(): Promise<void> }[] = [];
      const track = <Q extends { cleanup(): Promise<void> }>(query: Q): Q => {
        queries.push(query);
        return query;
      };
      try {
        await collection.preload();
        // Nothing is loaded until a query asks for it.
        assert.equal(collection.size, 0);
        assert.equal(requests.filter(isSubsetRequest).length, 0);

        const tagged = track(
          createLiveQueryCollection((q) =>
            q.from({ item: collection }).where(({ item }) => eq(item.tag, 'tag1')),
          ),
        );
        await tagged.preload();
        await assertLiveQueryMatches(db, tagged, `WHERE tag = 'tag1' ORDER BY id`, false);
        assert.ok(requests.some(isSubsetRequest), 'the query was loaded by a subset snapshot');
        // Only what the query needs was loaded, not the whole table.
        assert.ok(collection.size < (await selectItems(db)).length);

        const ranged = track(
          createLiveQueryCollection((q) =>
            q
              .from({ item: collection })
              .where(({ item }) => and(gt(item.n, 3), lt(item.n, 8)))
              .orderBy(({ item }) => item.n, 'desc')
              .orderBy(({ item }) => item.id, 'asc')
              .limit(7),
          ),
        );
        await ranged.preload();
        await assertLiveQueryMatches(
          db,
          ranged,
          `WHERE n > 3 AND n < 8 ORDER BY n DESC, id ASC LIMIT 7`,
          true,
        );

        const either = track(
          createLiveQueryCollection((q) =>
            q
              .from({ item: collection })
              .where(({ item }) =>
                or(isNull(item.tag), and(eq(item.done, true), not(like(item.title, 'item 1%')))),
              ),
          ),
        );
        await either.preload();
        await assertLiveQueryMatches(
          db,
          either,
          `WHERE tag IS NULL OR (done AND NOT title LIKE 'item 1%') ORDER BY id`,
          false,
        );

        const listed = track(
          createLiveQueryCollection((q) =>
            q
              .from({ item: collection })
              .where(({ item }) => inArray(item.id, [2, 3, 5, 7, 11, 999])),
          ),
        );
        await listed.preload();
        await assertLiveQueryMatches(
          db,
          listed,
          `WHERE id IN (2, 3, 5, 7, 11, 999) ORDER BY id`,
          false,
        );

        // Pages: a window moved forward loads the next page (a cursor on the ordering column).
        const paged = track(
          createLiveQueryCollection({
            query: (q) =>
              q
                .from({ item: collection })
                .where(({ item }) => gte(item.id, 3))
                .orderBy(({ item }) => item.id, 'asc')
                .offset(10)
                .limit(8),
          }),
        );
        await paged.preload();
        await assertLiveQueryMatches(
          db,
          paged,
          'WHERE id >= 3 ORDER BY id LIMIT 8 OFFSET 10',
          true,
        );
        await paged.utils.setWindow({ offset: 30, limit: 8 });
        await assertLiveQueryMatches(
          db,
          paged,
          'WHERE id >= 3 ORDER BY id LIMIT 8 OFFSET 30',
          true,
        );

        // Live changes after the loads keep every query equal to Postgres. (An update carries only
        // its changed columns, so on-demand mode applies it to rows it holds: row 2, moved into
        // `tagged` here, was loaded by `listed`.)
        await db.query(`INSERT INTO items (id, title, n, done, tag) VALUES
                          (700, 'new', 5, true, 'tag1'), (701, 'item 1 new', 6, true, NULL);
                        UPDATE items SET n = 4 WHERE id = 21;
                        UPDATE items SET tag = 'tag1' WHERE id = 2;
                        DELETE FROM items WHERE id IN (3, 6, 44)`);
        await assertLiveQueryMatches(db, tagged, `WHERE tag = 'tag1' ORDER BY id`, false);
        await assertLiveQueryMatches(
          db,
          ranged,
          `WHERE n > 3 AND n < 8 ORDER BY n DESC, id ASC LIMIT 7`,
          true,
        );
        await assertLiveQueryMatches(
          db,
          either,
          `WHERE tag IS NULL OR (done AND NOT title LIKE 'item 1%') ORDER BY id`,
          false,
        );
        await assertLiveQueryMatches(
          db,
          listed,
          `WHERE id IN (2, 3, 5, 7, 11, 999) ORDER BY id`,
          false,
        );
        await assertLiveQueryMatches(
          db,
          paged,
          'WHERE id >= 3 ORDER BY id LIMIT 8 OFFSET 30',
          true,
        );

        // Mutations through the collection are confirmed by their txids here too.
        const inserted = collection.insert({
          id: 900,
          title: 'on demand',
          n: 5,
          done: false,
          tag: 'tag1',
        });
        await inserted.isPersisted.promise;
        const updated = collection.update(900, (draft) => {
          draft.n = 6;
        });
        await updated.isPersisted.promise;
        await assertLiveQueryMatches(db, tagged, `WHERE tag = 'tag1' ORDER BY id`, false);
        await assertLiveQueryMatches(
          db,
          ranged,
          `WHERE n > 3 AND n < 8 ORDER BY n DESC, id ASC LIMIT 7`,
          true,
        );
        const deleted = collection.delete(900);
        await deleted.isPersisted.promise;
        await assertLiveQueryMatches(db, tagged, `WHERE tag = 'tag1' ORDER BY id`, false);
        assert.deepEqual(streamErrors, []);
      } finally {
        for (const query of queries) await query.cleanup();
        await collection.cleanup();
      }
    });
  });
});

describe('progressive mode', () => {
  test('a query answered from a subset first, then the whole shape; mutations confirmed', async () => {
    await withSluice(postgres, `${ITEMS_TABLE}; ${seedItems(400)}`, async ({ db, url }) => {
      const { collection, streamErrors, requests } = itemsCollection(db, url, 'progressive');
      const early = createLiveQueryCollection((q) =>
        q
          .from({ item: collection })
          .where(({ item }) => eq(item.n, 7))
          .orderBy(({ item }) => item.id, 'asc')
          .limit(5),
      );
      try {
        await early.preload();
        await assertLiveQueryMatches(db, early, 'WHERE n = 7 ORDER BY id LIMIT 5', true);
        assert.ok(requests.some(isSubsetRequest), 'the early query was answered by a subset');
        // Then the whole shape (preload() does not wait for it in this mode).
        await assertCollectionMatches(db, collection);
        await db.query(`DELETE FROM items WHERE id = 7; INSERT INTO items (id, title, n) VALUES (2, 'two', 7)
                          ON CONFLICT (id) DO UPDATE SET n = 7`);
        await assertLiveQueryMatches(db, early, 'WHERE n = 7 ORDER BY id LIMIT 5', true);
        await mutateAndConfirm(db, collection, 2_000);
        assert.deepEqual(streamErrors, []);
        await assertCollectionMatches(db, collection);
      } finally {
        await early.cleanup();
        await collection.cleanup();
      }
    });
  });
});
