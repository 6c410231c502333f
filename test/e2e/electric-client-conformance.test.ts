// The official @electric-sql/client (1.5.x) against a real Sluice and Postgres: basic sync, every
// column type of PROTOCOL.md §4, odd identifiers, projections, replica and log modes. Every test
// ends with the oracle (test/support/shape-oracle.ts). Chunking, resume, 409 and concurrency are
// in electric-client-streaming.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isChangeMessage, type ChangeMessage, type Message, type Row } from '@electric-sql/client';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import {
  assertMatchesPostgres,
  recordMessages,
  unrefClientSaveTimers,
  waitForRows,
  withSluice as withPostgresSluice,
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

const withSluice = (sql: string, body: (fixture: SluiceFixture) => Promise<void>) =>
  withPostgresSluice(postgres, sql, body);

const changes = (messages: Message[]): ChangeMessage[] => messages.filter(isChangeMessage);

const ITEMS = 'CREATE TABLE items (id int PRIMARY KEY, title text, n int);';
const items = { table: 'items' };

describe('official client: basic sync', () => {
  test('an empty table syncs to no rows, then the first row arrives', async () => {
    await withSluice(ITEMS, async ({ db, open }) => {
      const { shape } = open({ params: { table: 'items' } });
      assert.deepEqual(await shape.rows, []);
      await db.query(`INSERT INTO items VALUES (1, 'first', 10)`);
      const rows = await waitForRows(shape, (r) => r.length === 1);
      assert.deepEqual(rows, [{ id: 1, title: 'first', n: 10 }]);
      await assertMatchesPostgres(db, items, shape);
    });
  });

  test('initial data arrives complete', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i * 2 FROM generate_series(1, 300) i;
      INSERT INTO items VALUES (301, NULL, NULL), (302, '', 0);`;
    await withSluice(sql, async ({ db, open }) => {
      const { shape } = open({ params: { table: 'items' } });
      const rows = await shape.rows;
      assert.equal(rows.length, 302);
      assert.ok(rows.some((r) => r.id === 301 && r.title === null && r.n === null));
      await assertMatchesPostgres(db, items, shape);
    });
  });

  test('inserts, updates and deletes (also several in one transaction) are applied', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 10) i;`;
    await withSluice(sql, async ({ db, open }) => {
      const opened = open({ params: { table: 'items' } });
      const messages = recordMessages(opened);
      await opened.shape.rows;
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
      await waitForRows(opened.shape, (rows) => rows.some((r) => r.id === 12 && r.n === 112));
      await assertMatchesPostgres(db, items, opened.shape);
      // replica=default: an update carries the key and the changed columns, a delete the key.
      const update = changes(messages).find(
        (m) => m.headers.operation === 'update' && m.value.id === 2,
      );
      assert.deepEqual(update?.value, { id: 2, title: 'changed' });
      const deleted = changes(messages).find(
        (m) => m.headers.operation === 'delete' && m.value.id === 3,
      );
      assert.deepEqual(deleted?.value, { id: 3 });
    });
  });

  test('an update of the primary key moves the row to its new key', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 5) i;`;
    await withSluice(sql, async ({ db, open }) => {
      const { shape } = open({ params: { table: 'items' } });
      await shape.rows;
      await db.query(`UPDATE items SET id = 100, title = 'moved' WHERE id = 1`);
      await db.query(`UPDATE items SET id = id + 1000 WHERE id IN (2, 3)`);
      await waitForRows(shape, (rows) => rows.some((r) => r.id === 1003));
      await assertMatchesPostgres(db, items, shape);
      assert.ok(!shape.currentRows.some((r) => r.id === 1 || r.id === 2 || r.id === 3));
    });
  });

  test('two primary keys swapped in one transaction stay two rows', async () => {
    const sql = `CREATE TABLE items (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, title text, n int);
      INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);`;
    await withSluice(sql, async ({ db, open }) => {
      const { shape } = open({ params: { table: 'items' } });
      await shape.rows;
      await db.query(`UPDATE items SET id = 3 - id + 2 WHERE id IN (2, 3)`); // 2 <-> 3
      await db.query(`INSERT INTO items VALUES (4, 'marker', 4)`);
      await waitForRows(shape, (rows) => rows.some((r) => r.id === 4));
      await assertMatchesPostgres(db, items, shape, 2_000);
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

/** What the official client is documented to produce for MAX_ROW (parser.ts defaultParser). */
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
  d: '42', // a domain is reported under its own name, so the client keeps the text
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

describe('official client: column types of PROTOCOL.md §4', () => {
  test('snapshot and replicated values parse to what the client documents', async () => {
    await withSluice(TYPES_SQL, async ({ db, open }) => {
      await db.query(`INSERT INTO typed VALUES ${MAX_ROW}`, [1]);
      const { shape } = open({ params: { table: 'typed' } });
      const snapshot = await shape.rows;
      assert.deepEqual(snapshot, [maxRowParsed(1)]);

      // The same values through replication, a row of NULLs, minimum integers, an update.
      await db.query(`INSERT INTO typed VALUES ${MAX_ROW}`, [2]);
      await db.query(`INSERT INTO typed (id) VALUES (3)`);
      await db.query(
        `INSERT INTO typed (id, i2, i4, i8) VALUES (4, -32768, -2147483648, -9223372036854775808)`,
      );
      await db.query(
        `UPDATE typed SET b = false, f8 = '-Infinity', a_t = '{}', jb = '[]', m = 'sad' WHERE id = 1`,
      );
      const rows = await waitForRows(shape, (r) => r.length === 4 && r.some((x) => x.m === 'sad'));
      const byId = new Map(rows.map((row) => [row.id, row]));
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
      await assertMatchesPostgres(db, { table: 'typed' }, shape);
    });
  });
});

describe('official client: identifiers and projections', () => {
  const ODD_SQL = `
    CREATE TABLE "My, ""odd"" table" (id int PRIMARY KEY, "first name" text, "a,b" text, "q""x" text, "Upper" int);
    INSERT INTO "My, ""odd"" table" VALUES (1, 'Ann', 'x,y', 'q"1', 1);
    CREATE SCHEMA "Sch. 1";
    CREATE TABLE "Sch. 1"."My, ""odd"" table" (
      "Id" int PRIMARY KEY, "first name" text, "a,b" text, "q""x" text, "Upper" int, "hidden col" text);
    INSERT INTO "Sch. 1"."My, ""odd"" table" VALUES (1, 'Bob', 'p,q', 'q"2', 2, 'secret');`;

  test('table and column names with spaces, commas, dots and quotes', async () => {
    await withSluice(ODD_SQL, async ({ db, open }) => {
      const plain = open({ params: { table: '"My, ""odd"" table"' } });
      const projected = open({
        params: {
          table: '"Sch. 1"."My, ""odd"" table"',
          columns: ['Id', 'first name', 'a,b', 'q"x', 'Upper'],
        },
      });
      assert.deepEqual(await plain.shape.rows, [
        { id: 1, 'first name': 'Ann', 'a,b': 'x,y', 'q"x': 'q"1', Upper: 1 },
      ]);
      assert.deepEqual(await projected.shape.rows, [
        { Id: 1, 'first name': 'Bob', 'a,b': 'p,q', 'q"x': 'q"2', Upper: 2 },
      ]);
      await db.query(`INSERT INTO "My, ""odd"" table" VALUES (2, 'Cy', 'a/b', '"', 3)`);
      await db.query(`UPDATE "My, ""odd"" table" SET "q""x" = 'q""' WHERE id = 1`);
      await db.query(
        `INSERT INTO "Sch. 1"."My, ""odd"" table" VALUES (2, 'Di', ',', '""', 4, 'x')`,
      );
      await db.query(`UPDATE "Sch. 1"."My, ""odd"" table" SET "a,b" = '/', "hidden col" = 'y'`);
      await db.query(`DELETE FROM "Sch. 1"."My, ""odd"" table" WHERE "Id" = 1`);
      const plainSpec = { table: 'My, "odd" table' };
      const projectedSpec = {
        schema: 'Sch. 1',
        table: 'My, "odd" table',
        columns: ['Id', 'first name', 'a,b', 'q"x', 'Upper'],
      };
      await assertMatchesPostgres(db, plainSpec, plain.shape);
      await assertMatchesPostgres(db, projectedSpec, projected.shape);
    });
  });

  test('a columns projection serves only those columns, through snapshot and changes', async () => {
    const sql = `CREATE TABLE items (id int PRIMARY KEY, title text, secret text, n int);
      INSERT INTO items SELECT i, 'row ' || i, 'hidden', i FROM generate_series(1, 20) i;`;
    await withSluice(sql, async ({ db, open }) => {
      const { shape } = open({ params: { table: 'items', columns: ['id', 'title'] } });
      const rows = await shape.rows;
      assert.equal(rows.length, 20);
      assert.deepEqual(Object.keys(rows[0] ?? {}).sort(), ['id', 'title']);
      await db.query(`INSERT INTO items VALUES (21, 'new', 'hidden', 21)`);
      await db.query(`UPDATE items SET secret = 'only hidden changed' WHERE id = 1`);
      await db.query(`UPDATE items SET title = 'visible', n = 0 WHERE id = 2`);
      await db.query(`DELETE FROM items WHERE id = 3`);
      await waitForRows(shape, (r) => r.some((x) => x.title === 'visible'));
      await assertMatchesPostgres(db, { table: 'items', columns: ['id', 'title'] }, shape);
      for (const row of shape.currentRows)
        assert.deepEqual(Object.keys(row).sort(), ['id', 'title']);
    });
  });
});

describe('official client: replica and log modes', () => {
  test("replica: 'full' updates carry the whole row and old values; the Shape ends with full rows", async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 5) i;`;
    await withSluice(sql, async ({ db, open }) => {
      const opened = open({ params: { table: 'items', replica: 'full' } });
      const messages = recordMessages(opened);
      await opened.shape.rows;
      await db.query(`UPDATE items SET n = 100 WHERE id = 1`);
      await db.query(`DELETE FROM items WHERE id = 2`);
      await db.query(`INSERT INTO items VALUES (6, 'six', 6)`);
      await waitForRows(opened.shape, (rows) => rows.some((r) => r.id === 6));
      const update = changes(messages).find((m) => m.headers.operation === 'update');
      assert.deepEqual(update?.value, { id: 1, title: 'row 1', n: 100 });
      assert.deepEqual(update?.old_value, { n: 1 });
      const deleted = changes(messages).find((m) => m.headers.operation === 'delete');
      assert.deepEqual(deleted?.value, { id: 2, title: 'row 2', n: 2 });
      assert.deepEqual(
        opened.shape.currentRows.find((r) => r.id === 1),
        { id: 1, title: 'row 1', n: 100 },
      );
      await assertMatchesPostgres(db, items, opened.shape);
    });
  });

  test("log: 'changes_only' leaves out rows that existed before subscribing", async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'old ' || i, i FROM generate_series(1, 50) i;`;
    await withSluice(sql, async ({ db, open }) => {
      const { shape } = open({ params: { table: 'items' }, log: 'changes_only' });
      assert.deepEqual(await shape.rows, []);
      await db.query(`INSERT INTO items SELECT i, 'new ' || i, i FROM generate_series(51, 60) i`);
      await db.query(`UPDATE items SET n = -1 WHERE id IN (1, 51)`); // 1 is unknown to the client
      await db.query(`DELETE FROM items WHERE id IN (2, 52)`);
      await waitForRows(shape, (rows) => rows.some((r) => r.id === 51 && r.n === -1));
      await assertMatchesPostgres(db, { ...items, where: 'id > 50' }, shape);
    });
  });

  test("offset: 'now' skips the existing rows and follows later changes", async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, 'old ' || i, i FROM generate_series(1, 20) i;`;
    await withSluice(sql, async ({ db, open }) => {
      const { shape } = open({ params: { table: 'items' }, offset: 'now' });
      assert.deepEqual(await shape.rows, []);
      await db.query(`INSERT INTO items VALUES (21, 'new', 21), (22, 'new', 22)`);
      await db.query(`DELETE FROM items WHERE id = 22`);
      await waitForRows(shape, (rows) => rows.some((r) => r.id === 21));
      await assertMatchesPostgres(db, { ...items, where: 'id > 20' }, shape);
    });
  });
});
