// The conformance suite: the official @electric-sql/client (1.5.x) and @sluice/client side by
// side against a real Sluice and Postgres, each scenario run with both clients following the same
// shape: basic sync, every column type of docs/protocol.md §4, odd identifiers, projections, replica,
// log and offset options, and the main scenarios of electric-client-streaming.test.ts. Every test ends with both
// clients equal to Postgres (the oracle) and to each other; the column-type test also compares
// every parsed value with what the official client documents.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isChangeMessage as isOfficialChange, type Row } from '@electric-sql/client';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import {
  Shape,
  ShapeStream,
  isChangeMessage,
  type ChangeMessage,
  type Message,
  type ShapeStreamOptions,
} from '@sluice/client';
import {
  assertMatchesPostgres,
  recordMessages,
  unrefClientSaveTimers,
  valueText,
  waitForRows,
  withSluice,
  type OpenShape,
  type ShapeSpec,
  type SluiceFixture,
} from '../support/shape-oracle.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

/** Options both clients understand alike. */
interface PairOptions {
  params: { table: string; columns?: string[]; replica?: 'default' | 'full' };
  log?: 'changes_only';
  offset?: 'now';
}

interface SluiceShape {
  stream: ShapeStream;
  shape: Shape;
  /** Every message the stream delivered, in order. */
  messages: Message[];
  close(): void;
}

/** The same shape followed by both clients. */
interface Pair {
  official: OpenShape;
  sluice: SluiceShape;
}

function openSluice(url: string, options: Omit<ShapeStreamOptions, 'url' | 'signal'>): SluiceShape {
  const controller = new AbortController();
  const stream = new ShapeStream({ ...options, url, signal: controller.signal });
  const messages: Message[] = [];
  stream.subscribe((batch) => void messages.push(...batch));
  return { stream, shape: new Shape(stream), messages, close: () => controller.abort() };
}

/** Runs `body` with a fresh database and Sluice; every Sluice client is closed afterwards. */
async function withBoth(
  sql: string,
  body: (fixture: SluiceFixture & { pair: (options: PairOptions) => Pair }) => Promise<void>,
  overrides: Parameters<typeof withSluice>[3] = {},
): Promise<void> {
  const opened: SluiceShape[] = [];
  try {
    await withSluice(
      postgres,
      sql,
      (fixture) =>
        body({
          ...fixture,
          pair: (options) => {
            const sluice = openSluice(fixture.url, options);
            opened.push(sluice);
            return { official: fixture.open(options), sluice };
          },
        }),
      overrides,
    );
  } finally {
    for (const client of opened) client.close();
  }
}

/** Polls until `predicate` holds for the Sluice shape's rows; fails on a stream error. */
async function waitForSluiceRows(
  shape: Shape,
  predicate: (rows: Row[]) => boolean,
  timeoutMs = 20_000,
): Promise<Row[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (shape.error) throw shape.error;
    if (predicate(shape.currentRows)) return shape.currentRows;
    if (Date.now() > deadline) {
      assert.fail(`Sluice rows never matched in ${timeoutMs} ms: ${shape.currentRows.length} rows`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Both clients' first complete rows. */
async function bothRows(pair: Pair): Promise<[Row[], Row[]]> {
  return Promise.all([pair.official.shape.rows, pair.sluice.shape.rows]);
}

/** Waits for `predicate` on both clients' rows. */
async function waitForBoth(pair: Pair, predicate: (rows: Row[]) => boolean): Promise<void> {
  await waitForRows(pair.official.shape, predicate);
  await waitForSluiceRows(pair.sluice.shape, predicate);
}

/** The oracle for both, then the two clients' rows (by key) compared with each other. */
async function assertBothMatch(db: TestDatabase, spec: ShapeSpec, pair: Pair): Promise<void> {
  await assertMatchesPostgres(db, spec, pair.official.shape);
  await assertMatchesPostgres(db, spec, () => pair.sluice.shape.currentRows);
  assert.deepEqual(
    pair.sluice.shape.currentValue,
    pair.official.shape.currentValue,
    'both clients hold the same rows under the same keys',
  );
}

const sluiceChanges = (client: SluiceShape): ChangeMessage[] =>
  client.messages.filter(isChangeMessage);

const ITEMS = 'CREATE TABLE items (id int PRIMARY KEY, title text, n int);';
const items = { table: 'items' };

describe('both clients: basic sync', () => {
  test('an empty table syncs to no rows, then the first row arrives', async () => {
    await withBoth(ITEMS, async ({ db, pair: open }) => {
      const pair = open({ params: items });
      assert.deepEqual(await bothRows(pair), [[], []]);
      await db.query(`INSERT INTO items VALUES (1, 'first', 10)`);
      await waitForBoth(pair, (r) => r.length === 1);
      assert.deepEqual(pair.sluice.shape.currentRows, [{ id: 1, title: 'first', n: 10 }]);
      await assertBothMatch(db, items, pair);
    });
  });

  test('initial data arrives complete', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i * 2 FROM generate_series(1, 300) i;
      INSERT INTO items VALUES (301, NULL, NULL), (302, '', 0);`;
    await withBoth(sql, async ({ db, pair: open }) => {
      const pair = open({ params: items });
      const [, rows] = await bothRows(pair);
      assert.equal(rows.length, 302);
      assert.ok(rows.some((r) => r.id === 301 && r.title === null && r.n === null));
      await assertBothMatch(db, items, pair);
    });
  });

  test('inserts, updates and deletes (also several in one transaction) are applied', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 10) i;`;
    await withBoth(sql, async ({ db, pair: open }) => {
      const pair = open({ params: items });
      const officialMessages = recordMessages(pair.official);
      await bothRows(pair);
      await db.query(`INSERT INTO items VALUES (11, 'eleven', 11)`);
      await db.query(`UPDATE items SET title = 'changed' WHERE id = 2`);
      await db.query(`DELETE FROM items WHERE id = 3`);
      await db.query(`BEGIN;
        INSERT INTO items VALUES (12, 'twelve', 12);
        UPDATE items SET n = n + 100 WHERE id IN (4, 12);
        DELETE FROM items WHERE id = 5;
        INSERT INTO items VALUES (5, 'five again', 5);
        UPDATE items SET title = NULL WHERE id = 6;
        COMMIT;`);
      await waitForBoth(pair, (rows) => rows.some((r) => r.id === 12 && r.n === 112));
      await assertBothMatch(db, items, pair);
      // replica=default: an update carries the key and the changed columns, a delete the key.
      for (const changes of [
        sluiceChanges(pair.sluice),
        officialMessages.filter(isOfficialChange),
      ]) {
        const update = changes.find((m) => m.headers.operation === 'update' && m.value.id === 2);
        assert.deepEqual(update?.value, { id: 2, title: 'changed' });
        const deleted = changes.find((m) => m.headers.operation === 'delete' && m.value.id === 3);
        assert.deepEqual(deleted?.value, { id: 3 });
      }
    });
  });

  test('an update of the primary key moves the row to its new key', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 5) i;`;
    await withBoth(sql, async ({ db, pair: open }) => {
      const pair = open({ params: items });
      await bothRows(pair);
      await db.query(`UPDATE items SET id = 100, title = 'moved' WHERE id = 1`);
      await db.query(`UPDATE items SET id = id + 1000 WHERE id IN (2, 3)`);
      await waitForBoth(pair, (rows) => rows.some((r) => r.id === 1003));
      await assertBothMatch(db, items, pair);
      assert.ok(!pair.official.shape.currentRows.some((r) => [1, 2, 3].includes(r.id as number)));
    });
  });

  test('two primary keys swapped in one transaction stay two rows', async () => {
    const sql = `CREATE TABLE items (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, title text, n int);
      INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);`;
    await withBoth(sql, async ({ db, pair: open }) => {
      const pair = open({ params: items });
      await bothRows(pair);
      await db.query(`UPDATE items SET id = 3 - id + 2 WHERE id IN (2, 3)`); // 2 <-> 3
      await db.query(`INSERT INTO items VALUES (4, 'marker', 4)`);
      await waitForBoth(pair, (rows) => rows.some((r) => r.id === 4));
      await assertBothMatch(db, items, pair);
    });
  });
});

const TYPES_SQL = `
  CREATE TYPE mood AS ENUM ('happy', 'sad', 'it''s "complicated"');
  CREATE DOMAIN positive_int AS int4 CHECK (VALUE > 0);
  CREATE TYPE pair AS (n int4, label text);
  CREATE TABLE typed (
    id int4 PRIMARY KEY,
    i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, f8_nan float8, f8_inf float8, f8_ninf float8,
    num numeric, b bool, t text, vc varchar(12), u uuid, j json, jb jsonb, ts timestamptz,
    by bytea, m mood, d positive_int, p pair,
    a_i4 int4[], a_i4_2d int4[][], a_t text[], a_t_2d text[][], a_i8 int8[], a_b bool[],
    a_f8 float8[], a_jb jsonb[]
  );`;

const MAX_ROW = `(
  $1, 32767, 2147483647, 9223372036854775807, 1.5, 0.1, 'NaN', 'Infinity', '-Infinity',
  12345678901234567890.123456789, true, E'it''s "quoted", \\\\ back / slash \u00e9', 'varchar(12)!',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": [1, 2], "a": null, "s": "x\\"y"}',
  '{"b": [1, 2], "a": null}', '2024-02-29 23:59:59.123456+00', '\\x00ff10',
  'it''s "complicated"', 42, ROW(7, 'a b'),
  ARRAY[1, 2, NULL], ARRAY[[1, 2], [3, NULL]],
  ARRAY['a', 'b c', 'd"e', NULL, 'NULL', '', E'back\\\\slash', '{}'],
  ARRAY[['a', 'b'], ['c,d', NULL]], ARRAY[9223372036854775807, NULL], ARRAY[true, false, NULL],
  '{NaN,Infinity,-Infinity,1.5}'::float8[], ARRAY['{"a": 1}', NULL]::jsonb[])`;

/** What both clients must produce for MAX_ROW (the official client's parser.ts). */
const maxRowParsed = (id: number): Row => ({
  id,
  i2: 32767,
  i4: 2147483647,
  i8: 9223372036854775807n,
  f4: 1.5,
  f8: 0.1,
  f8_nan: NaN,
  f8_inf: Infinity,
  f8_ninf: -Infinity,
  num: '12345678901234567890.123456789',
  b: true,
  t: `it's "quoted", \\ back / slash \u00e9`,
  vc: 'varchar(12)!',
  u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  j: { b: [1, 2], a: null, s: 'x"y' },
  jb: { a: null, b: [1, 2] },
  ts: '2024-02-29 23:59:59.123456+00',
  by: '\\x00ff10',
  m: `it's "complicated"`,
  d: '42',
  p: '(7,"a b")',
  a_i4: [1, 2, null],
  a_i4_2d: [
    [1, 2],
    [3, null],
  ],
  a_t: ['a', 'b c', 'd"e', null, 'NULL', '', 'back\\slash', '{}'],
  a_t_2d: [
    ['a', 'b'],
    ['c,d', null],
  ],
  a_i8: [9223372036854775807n, null],
  a_b: [true, false, null],
  a_f8: [NaN, Infinity, -Infinity, 1.5],
  a_jb: [{ a: 1 }, null],
});

describe('both clients: column types of docs/protocol.md §4', () => {
  test('snapshot and replicated values parse to the same values in both clients', async () => {
    await withBoth(TYPES_SQL, async ({ db, pair: open }) => {
      await db.query(`INSERT INTO typed VALUES ${MAX_ROW}`, [1]);
      const pair = open({ params: { table: 'typed' } });
      const [official, sluice] = await bothRows(pair);
      assert.deepEqual(sluice, [maxRowParsed(1)]);
      assert.deepEqual(sluice, official);

      await db.query(`INSERT INTO typed VALUES ${MAX_ROW}`, [2]);
      await db.query(`INSERT INTO typed (id) VALUES (3)`);
      await db.query(
        `INSERT INTO typed (id, i2, i4, i8) VALUES (4, -32768, -2147483648, -9223372036854775808)`,
      );
      await db.query(
        `UPDATE typed SET b = false, f8 = '-Infinity', a_t = '{}', jb = '[]', m = 'sad' WHERE id = 1`,
      );
      await waitForBoth(pair, (r) => r.length === 4 && r.some((x) => x.m === 'sad'));
      const byId = new Map(pair.sluice.shape.currentRows.map((row) => [row.id, row]));
      assert.deepEqual(byId.get(2), maxRowParsed(2));
      assert.deepEqual(byId.get(1), {
        ...maxRowParsed(1),
        b: false,
        f8: -Infinity,
        a_t: [],
        jb: [],
        m: 'sad',
      });
      const nulls = byId.get(3);
      assert.ok(nulls);
      assert.deepEqual(Object.keys(nulls).sort(), Object.keys(maxRowParsed(3)).sort());
      for (const [column, value] of Object.entries(nulls)) {
        if (column !== 'id') assert.equal(value, null, column);
      }
      assert.deepEqual(
        { i2: byId.get(4)?.i2, i4: byId.get(4)?.i4, i8: byId.get(4)?.i8 },
        { i2: -32768, i4: -2147483648, i8: -9223372036854775808n },
      );
      // assertBothMatch also holds the official client's rows to these same values.
      await assertBothMatch(db, { table: 'typed' }, pair);
      // The replicated messages themselves (not only the rows) parse alike.
      const officialMessages = recordMessages(pair.official);
      await db.query(`UPDATE typed SET a_f8 = '{NaN}', i8 = 1 WHERE id = 2`);
      await waitForBoth(pair, (r) => r.some((x) => x.i8 === 1n));
      const lastOfficial = officialMessages.filter(isOfficialChange).at(-1);
      assert.deepEqual(sluiceChanges(pair.sluice).at(-1)?.value, lastOfficial?.value);
    });
  });
});

describe('both clients: identifiers and projections', () => {
  const ODD_SQL = `
    CREATE TABLE "My, ""odd"" table" (id int PRIMARY KEY, "first name" text, "a,b" text, "q""x" text, "Upper" int);
    INSERT INTO "My, ""odd"" table" VALUES (1, 'Ann', 'x,y', 'q"1', 1);
    CREATE SCHEMA "Sch. 1";
    CREATE TABLE "Sch. 1"."My, ""odd"" table" (
      "Id" int PRIMARY KEY, "first name" text, "a,b" text, "q""x" text, "Upper" int, "hidden col" text);
    INSERT INTO "Sch. 1"."My, ""odd"" table" VALUES (1, 'Bob', 'p,q', 'q"2', 2, 'secret');`;

  test('table and column names with spaces, commas, dots and quotes', async () => {
    await withBoth(ODD_SQL, async ({ db, pair: open }) => {
      const plain = open({ params: { table: '"My, ""odd"" table"' } });
      const projected = open({
        params: {
          table: '"Sch. 1"."My, ""odd"" table"',
          columns: ['Id', 'first name', 'a,b', 'q"x', 'Upper'],
        },
      });
      const [[, plainRows], [, projectedRows]] = await Promise.all([
        bothRows(plain),
        bothRows(projected),
      ]);
      assert.deepEqual(plainRows, [
        { id: 1, 'first name': 'Ann', 'a,b': 'x,y', 'q"x': 'q"1', Upper: 1 },
      ]);
      assert.deepEqual(projectedRows, [
        { Id: 1, 'first name': 'Bob', 'a,b': 'p,q', 'q"x': 'q"2', Upper: 2 },
      ]);
      await db.query(`INSERT INTO "My, ""odd"" table" VALUES (2, 'Cy', 'a/b', '"', 3)`);
      await db.query(`UPDATE "My, ""odd"" table" SET "q""x" = 'q""' WHERE id = 1`);
      await db.query(
        `INSERT INTO "Sch. 1"."My, ""odd"" table" VALUES (2, 'Di', ',', '""', 4, 'x')`,
      );
      await db.query(`UPDATE "Sch. 1"."My, ""odd"" table" SET "a,b" = '/', "hidden col" = 'y'`);
      await db.query(`DELETE FROM "Sch. 1"."My, ""odd"" table" WHERE "Id" = 1`);
      await assertBothMatch(db, { table: 'My, "odd" table' }, plain);
      const projectedSpec = {
        schema: 'Sch. 1',
        table: 'My, "odd" table',
        columns: ['Id', 'first name', 'a,b', 'q"x', 'Upper'],
      };
      await assertBothMatch(db, projectedSpec, projected);
    });
  });

  test('a columns projection serves only those columns, through snapshot and changes', async () => {
    const sql = `CREATE TABLE items (id int PRIMARY KEY, title text, secret text, n int);
      INSERT INTO items SELECT i, 'row ' || i, 'hidden', i FROM generate_series(1, 20) i;`;
    await withBoth(sql, async ({ db, pair: open }) => {
      const pair = open({ params: { table: 'items', columns: ['id', 'title'] } });
      const [, rows] = await bothRows(pair);
      assert.equal(rows.length, 20);
      assert.deepEqual(Object.keys(rows[0] ?? {}).sort(), ['id', 'title']);
      await db.query(`INSERT INTO items VALUES (21, 'new', 'hidden', 21)`);
      await db.query(`UPDATE items SET secret = 'only hidden changed' WHERE id = 1`);
      await db.query(`UPDATE items SET title = 'visible', n = 0 WHERE id = 2`);
      await db.query(`DELETE FROM items WHERE id = 3`);
      await waitForBoth(pair, (r) => r.some((x) => x.title === 'visible'));
      await assertBothMatch(db, { table: 'items', columns: ['id', 'title'] }, pair);
      for (const row of pair.official.shape.currentRows)
        assert.deepEqual(Object.keys(row).sort(), ['id', 'title']);
    });
  });
});

describe('both clients: replica, log and offset options', () => {
  test("replica: 'full' updates carry the whole row and old values", async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 5) i;`;
    await withBoth(sql, async ({ db, pair: open }) => {
      const pair = open({ params: { table: 'items', replica: 'full' } });
      const officialMessages = recordMessages(pair.official);
      await bothRows(pair);
      await db.query(`UPDATE items SET n = 100 WHERE id = 1`);
      await db.query(`DELETE FROM items WHERE id = 2`);
      await db.query(`INSERT INTO items VALUES (6, 'six', 6)`);
      await waitForBoth(pair, (rows) => rows.some((r) => r.id === 6));
      for (const changes of [
        sluiceChanges(pair.sluice),
        officialMessages.filter(isOfficialChange),
      ]) {
        const update = changes.find((m) => m.headers.operation === 'update');
        assert.deepEqual(update?.value, { id: 1, title: 'row 1', n: 100 });
        assert.deepEqual(update?.old_value, { n: 1 });
        const deleted = changes.find((m) => m.headers.operation === 'delete');
        assert.deepEqual(deleted?.value, { id: 2, title: 'row 2', n: 2 });
      }
      assert.deepEqual(
        pair.official.shape.currentRows.find((r) => r.id === 1),
        { id: 1, title: 'row 1', n: 100 },
      );
      await assertBothMatch(db, items, pair);
    });
  });

  test("log: 'changes_only' leaves out rows that existed before subscribing", async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'old ' || i, i FROM generate_series(1, 50) i;`;
    await withBoth(sql, async ({ db, pair: open }) => {
      const pair = open({ params: items, log: 'changes_only' });
      assert.deepEqual(await bothRows(pair), [[], []]);
      await db.query(`INSERT INTO items SELECT i, 'new ' || i, i FROM generate_series(51, 60) i`);
      await db.query(`UPDATE items SET n = -1 WHERE id IN (1, 51)`); // 1 is unknown to the clients
      await db.query(`DELETE FROM items WHERE id IN (2, 52)`);
      await waitForBoth(pair, (rows) => rows.some((r) => r.id === 51 && r.n === -1));
      await assertBothMatch(db, { ...items, where: 'id > 50' }, pair);
    });
  });

  test("offset: 'now' skips the existing rows and follows later changes", async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'old ' || i, i FROM generate_series(1, 20) i;`;
    await withBoth(sql, async ({ db, pair: open }) => {
      const pair = open({ params: items, offset: 'now' });
      assert.deepEqual(await bothRows(pair), [[], []]);
      await db.query(`INSERT INTO items VALUES (21, 'new', 21), (22, 'new', 22)`);
      await db.query(`DELETE FROM items WHERE id = 22`);
      await waitForBoth(pair, (rows) => rows.some((r) => r.id === 21));
      await assertBothMatch(db, { ...items, where: 'id > 20' }, pair);
    });
  });
});

describe('both clients: chunks, resume, refetch', () => {
  test('5,000 rows in 10 kB chunks sync completely, then changes follow', async () => {
    const sql = `${ITEMS} INSERT INTO items
      SELECT i, 'row ' || i || ' ' || repeat('x', i % 97), i FROM generate_series(1, 5000) i;`;
    await withBoth(
      sql,
      async ({ db, pair: open }) => {
        const pair = open({ params: items });
        const [, rows] = await bothRows(pair);
        assert.equal(rows.length, 5000);
        await db.query(`UPDATE items SET n = -n WHERE id % 100 = 0`);
        await db.query(`DELETE FROM items WHERE id BETWEEN 10 AND 19`);
        await db.query(`INSERT INTO items VALUES (5001, 'last', 0)`);
        await waitForBoth(pair, (r) => r.some((x) => x.id === 5001));
        await assertBothMatch(db, items, pair);
      },
      { chunkBytes: 10_240 },
    );
  });

  test('a stream resumed from a stored offset and handle sees only later changes', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 10) i;`;
    await withBoth(sql, async ({ db, url }) => {
      const first = openSluice(url, { params: items });
      await first.shape.rows;
      await db.query(`INSERT INTO items VALUES (11, 'eleven', 11)`);
      await waitForSluiceRows(first.shape, (r) => r.length === 11);
      const stored = new Map(first.shape.currentValue);
      const { lastOffset: offset, shapeHandle: handle } = first.stream;
      assert.ok(handle);
      first.close();

      await db.query(`INSERT INTO items VALUES (12, 'twelve', 12), (13, 'thirteen', 13)`);
      await db.query(`UPDATE items SET title = 'two' WHERE id = 2`);
      await db.query(`DELETE FROM items WHERE id IN (3, 12)`);

      const resumed = openSluice(url, { params: items, offset, handle });
      try {
        // What the resumed stream delivered so far, applied onto the stored rows (the app's
        // local cache); recomputed on every look, as changes may still be arriving.
        const merged = () => {
          const rows = new Map<string, Row>(stored);
          for (const m of sluiceChanges(resumed)) {
            if (m.headers.operation === 'insert') rows.set(m.key, m.value);
            else if (m.headers.operation === 'update')
              rows.set(m.key, { ...rows.get(m.key), ...m.value });
            else rows.delete(m.key);
          }
          return [...rows.values()];
        };
        await assertMatchesPostgres(db, items, merged);
        assert.equal(resumed.stream.shapeHandle, handle);
        const seen = sluiceChanges(resumed).map(
          (m) => `${m.headers.operation} ${valueText(m.value.id)}`,
        );
        assert.deepEqual(seen, ['insert 12', 'insert 13', 'update 2', 'delete 3', 'delete 12']);
      } finally {
        resumed.close();
      }
    });
  });

  test('after DELETE of the shape both clients get a 409, refetch and end equal', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 50) i;`;
    await withBoth(
      sql,
      async ({ db, url, pair: open }) => {
        const pair = open({ params: items });
        await bothRows(pair);
        const firstHandle = pair.sluice.stream.shapeHandle;
        assert.ok(firstHandle);
        const deleted = await fetch(`${url}?table=items`, { method: 'DELETE' });
        assert.equal(deleted.status, 202);
        await db.query(`INSERT INTO items VALUES (51, 'after delete', 51)`);
        await db.query(`DELETE FROM items WHERE id = 1`);
        await waitForBoth(pair, (r) => r.some((x) => x.id === 51) && !r.some((x) => x.id === 1));
        assert.notEqual(pair.sluice.stream.shapeHandle, firstHandle);
        const refetches = pair.sluice.messages.filter(
          (m) => !isChangeMessage(m) && m.headers.control === 'must-refetch',
        );
        assert.equal(refetches.length, 1, 'one must-refetch');
        await db.query(`INSERT INTO items VALUES (52, 'on the new handle', 52)`);
        await waitForBoth(pair, (r) => r.some((x) => x.id === 52));
        await assertBothMatch(db, items, pair);
      },
      { enableShapeDelete: true },
    );
  });

  test('several clients in parallel while writes stream in all end equal', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 200) i;`;
    await withBoth(sql, async ({ db, pair: open }) => {
      const early = open({ params: items });
      await bothRows(early);
      let id = 1_000;
      const stop = { done: false };
      const writing = (async () => {
        while (!stop.done) {
          await db.query(`BEGIN;
            INSERT INTO items VALUES (${id}, 'w', 0), (${id + 1}, 'w', 0);
            UPDATE items SET n = n + 1, title = title || '+' WHERE id IN (${id - 7}, ${id % 50});
            DELETE FROM items WHERE id = ${id - 4};
            COMMIT;`);
          id += 2;
        }
      })();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const joiner = open({ params: items });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      stop.done = true;
      await writing;
      for (const pair of [early, joiner]) {
        await waitForBoth(pair, (r) => r.some((x) => x.id === id - 1));
        await assertBothMatch(db, items, pair);
      }
    });
  });
});
