// TanStack DB (`@tanstack/db` with `@tanstack/electric-db-collection`) over a Sluice shape of the
// table `items`: a collection whose optimistic mutations are written to Postgres in one
// transaction that returns its transaction id, which the collection then awaits (`awaitTxId`, 5 s
// by default) before it drops the optimistic state. The oracle compares the collection with SELECT.
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { BasicIndex, createCollection, type Collection, type PendingMutation } from '@tanstack/db';
import {
  electricCollectionOptions,
  type ElectricCollectionUtils,
} from '@tanstack/electric-db-collection';
import type { TestDatabase } from '@sluice/harness';
import pg from 'pg';

/** Columns whose Postgres types node-postgres and the official client parse alike. */
export const ITEMS_TABLE = `CREATE TABLE items (
  id int PRIMARY KEY,
  title text NOT NULL,
  n int NOT NULL,
  done bool NOT NULL DEFAULT false,
  tag text
)`;

export type Item = { id: number; title: string; n: number; done: boolean; tag: string | null };

export const ITEM_COLUMNS = ['id', 'title', 'n', 'done', 'tag'] as const;

/** Rows 1..count, with every fourth tag NULL and `n` cycling through 0..9. */
export function seedItems(count: number, from = 1): string {
  return `INSERT INTO items (id, title, n, done, tag)
    SELECT g, 'item ' || g, g % 10, g % 3 = 0, CASE WHEN g % 4 = 0 THEN NULL ELSE 'tag' || (g % 5) END
      FROM generate_series(${from}, ${from + count - 1}) g`;
}

export type SyncMode = 'eager' | 'on-demand' | 'progressive';

export type ItemsCollection = Collection<Item, number, ElectricCollectionUtils<Item>>;

export interface ItemsCollectionHandle {
  collection: ItemsCollection;
  /** Every transaction id a mutation handler returned, in order. */
  txids: number[];
  /** Errors the collection's stream reported. */
  streamErrors: unknown[];
  /** Every request its stream sent, as `METHOD url`. */
  requests: string[];
}

/** Whether a request was a subset snapshot (GET with `subset__*` parameters, or a POST). */
export const isSubsetRequest = (request: string): boolean =>
  request.startsWith('POST ') || request.includes('subset__');

/**
 * A collection of `items` synced from Sluice in `syncMode`; each mutation batch is written to
 * Postgres in one transaction whose id the handler returns, so the collection confirms it with
 * `awaitTxId` at its default timeout.
 */
export function itemsCollection(
  db: TestDatabase,
  shapeUrl: string,
  syncMode: SyncMode,
  id = `items-${syncMode}`,
): ItemsCollectionHandle {
  const txids: number[] = [];
  const streamErrors: unknown[] = [];
  const requests: string[] = [];
  const fetchClient: typeof fetch = (input, init) => {
    const target = input instanceof Request ? input.url : input.toString();
    requests.push(`${init?.method ?? 'GET'} ${target}`);
    return fetch(input, init);
  };
  const persist = async (mutations: PendingMutation<Item>[]) => {
    const txid = await writeMutations(db, mutations);
    txids.push(txid);
    return { txid };
  };
  const collection = createCollection(
    electricCollectionOptions<Item>({
      id,
      syncMode,
      getKey: (item) => item.id,
      // Sync from the start: a progressive collection otherwise waits for a first query.
      startSync: true,
      // Ordered, limited queries then load only their rows (lazily, by cursor) instead of all.
      autoIndex: 'eager',
      defaultIndexType: BasicIndex,
      shapeOptions: {
        url: shapeUrl,
        params: { table: 'items' },
        fetchClient,
        onError: (error) => {
          streamErrors.push(error);
        },
      },
      onInsert: ({ transaction }) => persist(transaction.mutations),
      onUpdate: ({ transaction }) => persist(transaction.mutations),
      onDelete: ({ transaction }) => persist(transaction.mutations),
    }),
  ) as unknown as ItemsCollection;
  return { collection, txids, streamErrors, requests };
}

/** Writes the mutations in one transaction; returns its id as the collection awaits it. */
async function writeMutations(
  db: TestDatabase,
  mutations: readonly PendingMutation<Item>[],
): Promise<number> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await client.query('BEGIN');
    for (const mutation of mutations) {
      const item = mutation.modified;
      if (mutation.type === 'insert') {
        await client.query(
          'INSERT INTO items (id, title, n, done, tag) VALUES ($1, $2, $3, $4, $5)',
          [item.id, item.title, item.n, item.done, item.tag],
        );
      } else if (mutation.type === 'update') {
        await client.query(
          'UPDATE items SET title = $2, n = $3, done = $4, tag = $5 WHERE id = $1',
          [item.id, item.title, item.n, item.done, item.tag],
        );
      } else {
        // A delete's original is the row as the collection held it.
        await client.query('DELETE FROM items WHERE id = $1', [(mutation.original as Item).id]);
      }
    }
    const { rows } = await client.query<{ txid: string }>(
      'SELECT pg_current_xact_id()::xid::text AS txid',
    );
    await client.query('COMMIT');
    return Number(rows[0]!.txid);
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
}

/** The rows of `items` (optionally filtered and ordered: SQL after FROM) as the client parses them. */
export async function selectItems(db: TestDatabase, rest = 'ORDER BY id'): Promise<Item[]> {
  const { rows } = await db.query<Item>(`SELECT ${ITEM_COLUMNS.join(', ')} FROM items ${rest}`);
  return rows;
}

/** Only the item's own columns (the collection may add virtual properties to what it returns). */
export function plainItem(row: Item): Item {
  return {
    id: row.id,
    title: row.title,
    n: row.n,
    done: row.done,
    tag: row.tag,
  };
}

const byId = (a: Item, b: Item) => a.id - b.id;

/**
 * THE ORACLE for a collection: waits (up to `timeoutMs`) until its rows equal SELECT of `items`,
 * failing with the difference.
 */
export async function assertCollectionMatches(
  db: TestDatabase,
  collection: ItemsCollection,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const expected = await selectItems(db);
    const actual = collection.toArray.map(plainItem).sort(byId);
    if (isDeepStrictEqual(actual, expected)) return;
    if (Date.now() > deadline) assert.deepEqual(actual, expected, 'collection differs from SELECT');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Waits until `check` holds, failing with `what` after `timeoutMs`. */
export async function eventually(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A transaction written beside the collection (not through it): its id, to await. */
export async function writeDirectly(db: TestDatabase, sql: string): Promise<number> {
  const { rows } = await db.query<{ txid: string }>(
    `WITH done AS (${sql} RETURNING 1) SELECT pg_current_xact_id()::xid::text AS txid FROM done LIMIT 1`,
  );
  return Number(rows[0]!.txid);
}

/**
 * Inserts, updates and deletes through the collection, each awaited until `awaitTxId` (default
 * 5 s) confirms it; once confirmed the row must be synced, not merely optimistic.
 */
export async function mutateAndConfirm(
  db: TestDatabase,
  collection: ItemsCollection,
  firstId: number,
): Promise<void> {
  const inserted = collection.insert({
    id: firstId,
    title: 'optimistic',
    n: 4,
    done: false,
    tag: null,
  });
  assert.equal(collection.get(firstId)?.title, 'optimistic', 'optimistic insert shown at once');
  await inserted.isPersisted.promise;
  assert.equal(inserted.state, 'completed');
  assert.deepEqual(
    plainItem(collection.get(firstId)!),
    (await selectItems(db, `WHERE id = ${firstId}`))[0],
  );

  const batch = collection.insert([
    { id: firstId + 1, title: 'batch a', n: 1, done: true, tag: 'tag1' },
    { id: firstId + 2, title: 'batch b', n: 2, done: false, tag: 'tag2' },
  ]);
  await batch.isPersisted.promise;
  assert.ok(collection.has(firstId + 1) && collection.has(firstId + 2));

  const updated = collection.update(firstId, (draft) => {
    draft.title = 'updated';
    draft.n = 9;
    draft.tag = 'tag3';
  });
  await updated.isPersisted.promise;
  assert.equal(collection.get(firstId)?.title, 'updated');

  const deleted = collection.delete(firstId + 1);
  await deleted.isPersisted.promise;
  assert.equal(collection.has(firstId + 1), false);

  await assertCollectionMatches(db, collection, 0);
}

/** What the oracle reads of a live query: its rows, in the query's order. */
interface LiveRows {
  readonly toArray: readonly object[];
}

/** Waits until a live query's rows equal `SELECT … <rest>` (in order when `ordered`). */
export async function assertLiveQueryMatches(
  db: TestDatabase,
  query: LiveRows,
  rest: string,
  ordered = false,
  timeoutMs = 20_000,
): Promise<void> {
  let actual: Item[] = [];
  let expected: Item[] = [];
  try {
    await eventually(
      `live query to equal SELECT … ${rest}`,
      async () => {
        expected = await selectItems(db, rest);
        actual = query.toArray.map((row) => plainItem(row as Item));
        if (!ordered) actual.sort((a, b) => a.id - b.id);
        return JSON.stringify(actual) === JSON.stringify(expected);
      },
      timeoutMs,
    );
  } catch {
    assert.deepEqual(actual, expected, `live query differs from SELECT … ${rest}`);
  }
}
