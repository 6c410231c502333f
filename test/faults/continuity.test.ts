// Continuity (docs/protocol.md §3 "409 must-refetch", §6 last rule): when the server can no longer
// vouch that a shape's log continues the data a client holds (table truncated, columns changed,
// table replaced under its name, slot dropped or invalidated), the shape gets a new handle, old handles answer 409 naming it, and
// an official client refetches exactly once and ends equal to Postgres. When continuity holds
// (a walsender merely restarts), nothing rotates. A table created after the server started syncs
// like any other.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  dropSlot,
  invalidateSlot,
  startPostgres,
  terminateWalsender,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import { CountingFollower } from '../support/counting-follower.js';
import { isRotation, rawRequest, readToEnd, type RawReply } from '../support/raw-shape.js';
import { assertMatchesPostgres } from '../support/shape-oracle.js';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';
import { StableSluice } from '../support/stable-port-sluice.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const TABLES = `
  CREATE TABLE items (id int PRIMARY KEY, v int);
  CREATE TABLE other (id int PRIMARY KEY, v int);
  INSERT INTO items SELECT g, g * 10 FROM generate_series(1, 20) g;
  INSERT INTO other SELECT g, g FROM generate_series(1, 5) g;`;

/** Where a client stood on a shape before the fault: its handle and last offset. */
interface Position {
  table: string;
  handle: string;
  offset: string;
}

interface Context {
  db: TestDatabase;
  baseUrl: string;
  /** A follower (official client) closed when the test ends. */
  follow(table: string): CountingFollower;
}

describe('continuity: shapes rotate exactly when continuity breaks', () => {
  let pg: TestPostgres;
  let sentinel = 1_000_000;

  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    await pg.stop();
  });

  /** A fresh database (set up with `sql`) and a Sluice on it; everything is torn down after. */
  async function withSluice(
    sql: string,
    body: (context: Context) => Promise<void>,
    options: { stable?: (sluice: StableSluice) => void } = {},
  ): Promise<void> {
    const db = await pg.createDatabase();
    const followers: CountingFollower[] = [];
    let close: (() => Promise<void>) | undefined;
    try {
      if (sql) await db.query(sql);
      let baseUrl: string;
      if (options.stable) {
        const sluice = await StableSluice.start(db);
        close = () => sluice.close();
        options.stable(sluice);
        baseUrl = sluice.baseUrl;
      } else {
        const sluice = await startSluice(db);
        close = () => sluice.close();
        baseUrl = sluice.baseUrl;
      }
      await waitUntilLive(baseUrl);
      await body({
        db,
        baseUrl,
        follow: (table) => {
          const follower = new CountingFollower(`${baseUrl}/v1/shape`, { table });
          followers.push(follower);
          return follower;
        },
      });
    } finally {
      for (const follower of followers) follower.close();
      await close?.();
      await db.drop();
    }
  }

  /** The oracle: the follower's rows equal SELECT of the table (every column, parsed). */
  async function converged(db: TestDatabase, follower: CountingFollower, table: string) {
    await assertMatchesPostgres(db, { table }, () => [...follower.rows.values()], 30_000);
  }

  /**
   * One more write per table, after everything the test did, followed to the end: any rotation
   * the earlier changes cause has then reached the followers, so their refetch counts are final.
   */
  async function settle(db: TestDatabase, followed: [CountingFollower, string][]) {
    for (const [follower, table] of followed) {
      await db.query(`INSERT INTO ${table} (id, v) VALUES ($1, 0)`, [sentinel++]);
      await converged(db, follower, table);
    }
  }

  /** Reads a shape to its end with raw HTTP: the handle and offset a client would resume at. */
  async function positionOf(baseUrl: string, table: string): Promise<Position> {
    return { table, ...(await readToEnd(baseUrl, { table })) };
  }

  /** Polls the old handle at its offset until it answers 409; returns the new handle. */
  async function rotated(baseUrl: string, position: Position, timeoutMs = 30_000): Promise<string> {
    const { table, handle, offset } = position;
    const deadline = Date.now() + timeoutMs;
    let reply: RawReply;
    do {
      reply = await rawRequest(baseUrl, { table, handle, offset });
      if (isRotation(reply, handle)) break;
      assert.equal(reply.status, 200, `old handle of ${table}: ${reply.status} ${reply.text}`);
      await sleep(100);
    } while (Date.now() < deadline);
    assert.equal(reply.status, 409, `the old handle of ${table} must get 409 once rotated`);
    assert.equal(reply.text, '[{"headers":{"control":"must-refetch"}}]');
    const next = reply.headers.get('electric-handle');
    assert.ok(next && next !== handle, `409 names a new handle (${next} vs ${handle})`);
    // A live request on the old handle is refused at once, with the same new handle.
    const live = await rawRequest(baseUrl, { table, handle, offset, live: 'true', cursor: '' });
    assert.equal(live.status, 409, `live request on the old handle: ${live.text}`);
    // The same new handle; while replication is down, a fallback handle names the snapshot it
    // was read in (docs/protocol.md §7.3), so a transaction ending between the two requests
    // gives the same shape's fallback handle of a later snapshot.
    const fallback = next.split('-fallback-')[0];
    const liveHandle = live.headers.get('electric-handle') ?? '';
    if (next.includes('-fallback-')) assert.equal(liveHandle.split('-fallback-')[0], fallback);
    else assert.equal(liveHandle, next);
    return next;
  }

  /** The old handle still serves (200, same handle) from where the client stood. */
  async function notRotated(baseUrl: string, position: Position): Promise<void> {
    const { table, handle, offset } = position;
    const reply = await rawRequest(baseUrl, { table, handle, offset });
    assert.equal(reply.status, 200, `${table} must not rotate: ${reply.status} ${reply.text}`);
    assert.equal(reply.headers.get('electric-handle'), handle, `${table} keeps its handle`);
  }

  /**
   * One refetch, onto the handle `rotated` found. While replication is down that is a fallback
   * handle (docs/protocol.md §7.3); a follower whose own 409 came only once live again went
   * straight to the live shape, which is then where it must be.
   */
  async function assertRefetchedOnce(
    baseUrl: string,
    follower: CountingFollower,
    newHandle: string,
    table: string,
  ) {
    assert.equal(follower.mustRefetches, 1, `${table}: exactly one must-refetch`);
    assert.deepEqual(follower.duplicates(), [], `${table}: no insert twice since the refetch`);
    assert.deepEqual(follower.errors, [], `${table}: no client error`);
    const handle = follower.stream.shapeHandle;
    const expected =
      newHandle.includes('-fallback-') && handle !== newHandle
        ? (await positionOf(baseUrl, table)).handle
        : newHandle;
    assert.equal(handle, expected, `${table}: client moved to the new handle`);
  }

  function assertUntouched(follower: CountingFollower, handle: string, table: string) {
    assert.equal(follower.mustRefetches, 0, `${table}: no must-refetch`);
    assert.deepEqual(follower.duplicates(), [], `${table}: no insert twice`);
    assert.deepEqual(follower.errors, [], `${table}: no client error`);
    assert.equal(follower.stream.shapeHandle, handle, `${table}: same handle`);
  }

  /** Followers on both tables, synced, then one live write each so offsets are replication ones. */
  async function followBoth(context: Context) {
    const { db, baseUrl } = context;
    const items = context.follow('items');
    const other = context.follow('other');
    await converged(db, items, 'items');
    await converged(db, other, 'other');
    await db.query(
      'BEGIN; UPDATE items SET v = v + 1 WHERE id <= 3; INSERT INTO other VALUES (6, 6); COMMIT',
    );
    await converged(db, items, 'items');
    await converged(db, other, 'other');
    return {
      items,
      other,
      itemsAt: await positionOf(baseUrl, 'items'),
      otherAt: await positionOf(baseUrl, 'other'),
    };
  }

  /**
   * The end of every single-table rotation: both followers equal Postgres, `items` refetched
   * exactly once onto `handle`, and `other` kept its handle without a refetch.
   */
  async function onlyItemsRotated(
    context: { db: TestDatabase; baseUrl: string },
    followed: Pick<Awaited<ReturnType<typeof followBoth>>, 'items' | 'other' | 'otherAt'>,
    handle: string,
  ): Promise<void> {
    const { db, baseUrl } = context;
    const { items, other, otherAt } = followed;
    await converged(db, items, 'items');
    await converged(db, other, 'other');
    await settle(db, [
      [items, 'items'],
      [other, 'other'],
    ]);
    await assertRefetchedOnce(baseUrl, items, handle, 'items');
    assertUntouched(other, otherAt.handle, 'other');
    await notRotated(baseUrl, otherAt);
  }

  test('TRUNCATE rotates the shapes of that table only', async () => {
    await withSluice(TABLES, async (context) => {
      const { db, baseUrl } = context;
      const { items, other, itemsAt, otherAt } = await followBoth(context);
      await db.query('TRUNCATE items');
      const handle = await rotated(baseUrl, itemsAt);
      await db.query('INSERT INTO items SELECT g, g FROM generate_series(100, 110) g');
      await db.query('UPDATE items SET v = -1 WHERE id = 105; DELETE FROM items WHERE id = 106');
      await db.query('INSERT INTO other VALUES (7, 7)');
      await onlyItemsRotated(context, { items, other, otherAt }, handle);
    });
  });

  test('TRUNCATE inside a transaction that also writes the table', async () => {
    await withSluice(TABLES, async (context) => {
      const { db, baseUrl } = context;
      const { items, other, itemsAt, otherAt } = await followBoth(context);
      await db.query(`BEGIN;
        INSERT INTO items VALUES (50, 50);
        UPDATE other SET v = 100 WHERE id = 1;
        TRUNCATE items;
        INSERT INTO items VALUES (51, 51), (52, 52);
        COMMIT`);
      const handle = await rotated(baseUrl, itemsAt);
      await db.query('INSERT INTO items VALUES (53, 53)');
      await onlyItemsRotated(context, { items, other, otherAt }, handle);
    });
  });

  test('ADD COLUMN rotates the shapes of that table once it is written', async () => {
    await withSluice(TABLES, async (context) => {
      const { db, baseUrl } = context;
      const { items, other, itemsAt, otherAt } = await followBoth(context);
      await db.query("ALTER TABLE items ADD COLUMN note text DEFAULT 'n/a'");
      await db.query("INSERT INTO items (id, v, note) VALUES (500, 5, 'after the alter')");
      const handle = await rotated(baseUrl, itemsAt);
      await db.query(
        "UPDATE items SET note = 'changed' WHERE id = 1; DELETE FROM items WHERE id = 2",
      );
      await db.query('UPDATE other SET v = v + 1');
      await converged(db, items, 'items');
      await converged(db, other, 'other');
      await settle(db, [
        [items, 'items'],
        [other, 'other'],
      ]);
      await assertRefetchedOnce(baseUrl, items, handle, 'items');
      assert.equal(items.rows.get('"public"."items"/"1"')?.note, 'changed', 'the new column syncs');
      assertUntouched(other, otherAt.handle, 'other');
      await notRotated(baseUrl, otherAt);
      // The new handle's schema describes the new column.
      const initial = await rawRequest(baseUrl, { table: 'items', offset: '-1' });
      assert.equal(initial.headers.get('electric-handle'), handle);
      const schema = JSON.parse(initial.headers.get('electric-schema') ?? '{}') as object;
      assert.deepEqual(Object.keys(schema), ['id', 'v', 'note']);
    });
  });

  // A shape names its table; Postgres streams it by oid. A table dropped and created again, or
  // renamed away with another created under its name, is other data under the same name.
  const replacements = [
    { what: 'dropped and created again', sql: 'DROP TABLE items', then: '' },
    {
      what: 'renamed away, another created under its name',
      sql: 'ALTER TABLE items RENAME TO items_old',
      // A write to the renamed table makes replication describe it under its new name.
      then: 'INSERT INTO items_old VALUES (901, 901)',
    },
  ];
  for (const { what, sql, then } of replacements) {
    test(`a table ${what}: its shapes rotate`, async () => {
      await withSluice(TABLES, async (context) => {
        const { db, baseUrl } = context;
        const { items, other, itemsAt, otherAt } = await followBoth(context);
        await db.query(`${sql}; CREATE TABLE items (id int PRIMARY KEY, v int);
          INSERT INTO items VALUES (1, -1), (900, 900)`);
        if (then) await db.query(then);
        // Once this write has arrived, the server has seen everything before it.
        await db.query('INSERT INTO other VALUES (8, 8)');
        await converged(db, other, 'other');
        const handle = await rotated(baseUrl, itemsAt, 10_000);
        await db.query('INSERT INTO items VALUES (902, 902)');
        await converged(db, items, 'items');
        await settle(db, [
          [items, 'items'],
          [other, 'other'],
        ]);
        await assertRefetchedOnce(baseUrl, items, handle, 'items');
        assertUntouched(other, otherAt.handle, 'other');
      });
    });
  }

  test('the slot dropped while streaming: every shape rotates, a new slot goes live', async () => {
    await withSluice(TABLES, async (context) => {
      const { db, baseUrl } = context;
      const { items, other, itemsAt, otherAt } = await followBoth(context);
      await dropSlot(db, db.slotName);
      // Written while there may be no slot at all: only the new snapshots can hold these.
      await db.query('INSERT INTO items VALUES (60, 60); DELETE FROM other WHERE id = 2');
      const itemsHandle = await rotated(baseUrl, itemsAt);
      const otherHandle = await rotated(baseUrl, otherAt);
      await waitUntilLive(baseUrl);
      await db.query('INSERT INTO items VALUES (61, 61); UPDATE other SET v = 0 WHERE id = 3');
      await converged(db, items, 'items');
      await converged(db, other, 'other');
      await settle(db, [
        [items, 'items'],
        [other, 'other'],
      ]);
      await assertRefetchedOnce(baseUrl, items, itemsHandle, 'items');
      await assertRefetchedOnce(baseUrl, other, otherHandle, 'other');
      const slot = await db.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [
        db.slotName,
      ]);
      assert.equal(slot.rowCount, 1, 'the server made a new slot');
    });
  });

  test('the slot invalidated while Sluice was down: every shape rotates on restart', async () => {
    let sluice: StableSluice | undefined;
    await withSluice(
      TABLES,
      async (context) => {
        const { db, baseUrl } = context;
        assert.ok(sluice);
        const { items, other, itemsAt, otherAt } = await followBoth(context);
        // Stopped, so no walsender keeps the slot's WAL position moving during invalidation.
        await sluice.stop();
        await db.query('INSERT INTO items VALUES (70, 70); UPDATE other SET v = 7 WHERE id = 1');
        await invalidateSlot(db, db.slotName);
        await sluice.resume();
        const itemsHandle = await rotated(baseUrl, itemsAt);
        const otherHandle = await rotated(baseUrl, otherAt);
        await waitUntilLive(baseUrl);
        await db.query('INSERT INTO items VALUES (71, 71); DELETE FROM other WHERE id = 4');
        await converged(db, items, 'items');
        await converged(db, other, 'other');
        await settle(db, [
          [items, 'items'],
          [other, 'other'],
        ]);
        await assertRefetchedOnce(baseUrl, items, itemsHandle, 'items');
        await assertRefetchedOnce(baseUrl, other, otherHandle, 'other');
        const slot = await db.query<{ wal_status: string }>(
          'SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1',
          [db.slotName],
        );
        assert.notEqual(slot.rows[0]?.wal_status, 'lost', 'the lost slot was replaced');
      },
      { stable: (started) => (sluice = started) },
    );
  });

  test('counter-check: a terminated walsender rotates nothing', async () => {
    await withSluice(TABLES, async (context) => {
      const { db, baseUrl } = context;
      const { items, other, itemsAt, otherAt } = await followBoth(context);
      for (let round = 0; round < 2; round++) {
        const pid = await terminateWalsender(db, db.slotName);
        await db.query(`INSERT INTO items VALUES (${80 + round}, 1); UPDATE other SET v = v + 1`);
        await waitForWalsender(db, pid);
        await waitUntilLive(baseUrl);
        await converged(db, items, 'items');
        await converged(db, other, 'other');
      }
      await settle(db, [
        [items, 'items'],
        [other, 'other'],
      ]);
      assertUntouched(items, itemsAt.handle, 'items');
      assertUntouched(other, otherAt.handle, 'other');
      await notRotated(baseUrl, itemsAt);
      await notRotated(baseUrl, otherAt);
    });
  });

  test('a table created after the server started syncs, live', async () => {
    await withSluice('', async (context) => {
      const { db, baseUrl } = context;
      const missing = await rawRequest(baseUrl, { table: 'late', offset: '-1' });
      assert.equal(missing.status, 400, `no table yet: ${missing.text}`);
      await db.query(`CREATE TABLE late (id int PRIMARY KEY, v int, label text);
        INSERT INTO late SELECT g, g, 'row ' || g FROM generate_series(1, 10) g`);
      const late = context.follow('late');
      await converged(db, late, 'late');
      const at = await positionOf(baseUrl, 'late');
      await db.query(
        "INSERT INTO late VALUES (11, 11, 'live'); UPDATE late SET label = 'x' WHERE id = 1",
      );
      await db.query('DELETE FROM late WHERE id = 2; UPDATE late SET id = 200 WHERE id = 3');
      await converged(db, late, 'late');
      // And a second table, created while the first one streams.
      await db.query(`CREATE TABLE later (id int PRIMARY KEY, v int);
        INSERT INTO later VALUES (1, 1)`);
      const later = context.follow('later');
      await converged(db, later, 'later');
      await db.query(
        'BEGIN; INSERT INTO later VALUES (2, 2); INSERT INTO late VALUES (12, 12); COMMIT',
      );
      await converged(db, later, 'later');
      await converged(db, late, 'late');
      await settle(db, [
        [late, 'late'],
        [later, 'later'],
      ]);
      assertUntouched(late, at.handle, 'late');
      assertUntouched(later, later.stream.shapeHandle ?? '', 'later');
      assert.ok(late.upToDates > 1, 'the late table got live updates');
      const published = await db.query<{ tablename: string }>(
        'SELECT tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY tablename',
        [db.publicationName],
      );
      assert.deepEqual(
        published.rows.map((r) => r.tablename),
        ['late', 'later'],
      );
    });
  });
});

/** Waits until a walsender other than `pid` streams from the slot. */
async function waitForWalsender(db: TestDatabase, pid: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { rows } = await db.query<{ active_pid: number | null }>(
      'SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1',
      [db.slotName],
    );
    const active = rows[0]?.active_pid;
    if (active && active !== pid) return;
    if (Date.now() > deadline) throw new Error('no walsender came back');
    await sleep(50);
  }
}
