// The conformance scenarios (docs/testing.md): the official @electric-sql/client (1.5.x) and
// @sluice/client side by side against a real Sluice and Postgres, each scenario run with every
// client following the same shape: basic sync, every column type of docs/protocol.md §4, odd
// identifiers, projections, replica, log and offset options, and the main scenarios of
// electric-client-streaming.test.ts. Every scenario ends with each client equal to Postgres (the
// oracle) and to the official one; the column-type scenario also compares every parsed value
// with what the official client documents. Sluice's client runs in one or more variants (over
// long-polls in test/e2e/client-conformance.test.ts; over long-polls and over its WebSocket in
// test/e2e/ws-conformance.test.ts), each with its own options and after-checks.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isChangeMessage as isOfficialChange, type Row } from '@electric-sql/client';
import type { TestDatabase, TestPostgres } from '@sluice/harness';
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
  valueText,
  waitForRows,
  withSluice,
  type OpenShape,
  type ShapeSpec,
  type SluiceFixture,
} from './shape-oracle.js';

/** Options every client understands alike. */
interface PairOptions {
  params: { table: string; columns?: string[]; replica?: 'default' | 'full' };
  log?: 'changes_only';
  offset?: 'now';
}

export type SluiceOptions = Omit<ShapeStreamOptions, 'url' | 'signal' | 'fetchClient'>;

export interface SluiceShape {
  stream: ShapeStream;
  shape: Shape;
  /** Every message the stream delivered, in order. */
  messages: Message[];
  /** Every URL the stream fetched (shape and status requests), in order. */
  requests: URL[];
  close(): void;
}

/** One way of running Sluice's client: its options and what must hold after each scenario. */
export interface SluiceVariant {
  /** Names the client in assertion messages, e.g. `long-poll`. */
  name: string;
  /** Options every stream of this variant gets. */
  options?: SluiceOptions;
  /** Runs once a scenario's body has passed, on each stream of this variant it opened. */
  verify?: (client: SluiceShape) => void;
}

/** The same shape followed by the official client and by each variant of Sluice's. */
interface Clients {
  official: OpenShape;
  /** One per variant, in the variants' order. */
  sluice: SluiceShape[];
}

export function openSluice(url: string, options: SluiceOptions): SluiceShape {
  const controller = new AbortController();
  const requests: URL[] = [];
  const fetchClient: typeof fetch = (input, init) => {
    requests.push(new URL(input instanceof Request ? input.url : input.toString()));
    return fetch(input, init);
  };
  const stream = new ShapeStream({ ...options, url, signal: controller.signal, fetchClient });
  const messages: Message[] = [];
  stream.subscribe((batch) => void messages.push(...batch));
  return { stream, shape: new Shape(stream), messages, requests, close: () => controller.abort() };
}

/** Polls until `predicate` holds for a Sluice shape's rows; fails on a stream error. */
export async function waitForSluiceRows(
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

/** Every client's first complete rows, the official client's first. */
async function allRows(clients: Clients): Promise<Row[][]> {
  return Promise.all([clients.official.shape.rows, ...clients.sluice.map((c) => c.shape.rows)]);
}

/** Waits for `predicate` on every client's rows. */
async function waitForAll(clients: Clients, predicate: (rows: Row[]) => boolean): Promise<void> {
  await waitForRows(clients.official.shape, predicate);
  for (const client of clients.sluice) await waitForSluiceRows(client.shape, predicate);
}

const sluiceChanges = (client: SluiceShape): ChangeMessage[] =>
  client.messages.filter(isChangeMessage);

const ITEMS = 'CREATE TABLE items (id int PRIMARY KEY, title text, n int);';
const items = { table: 'items' };

/**
 * Declares every scenario (describe and test blocks) for the official client beside Sluice's in
 * each of `variants`; `postgres` gives the cluster the test file's `before` started.
 */
export function conformanceScenarios(
  postgres: () => TestPostgres,
  variants: readonly SluiceVariant[],
): void {
  /** The oracle for every client, then each Sluice client's rows compared with the official's. */
  async function assertAllMatch(db: TestDatabase, spec: ShapeSpec, clients: Clients) {
    await assertMatchesPostgres(db, spec, clients.official.shape);
    for (const [i, client] of clients.sluice.entries()) {
      await assertMatchesPostgres(db, spec, () => client.shape.currentRows);
      assert.deepEqual(
        client.shape.currentValue,
        clients.official.shape.currentValue,
        `${variants[i]?.name ?? ''}: the same rows under the same keys as the official client`,
      );
    }
  }

  /** Runs `body` with a fresh database and Sluice; every Sluice client is closed afterwards. */
  async function withAll(
    sql: string,
    body: (
      fixture: SluiceFixture & {
        pair: (options: PairOptions) => Clients;
        openVariant: (variant: SluiceVariant, options: SluiceOptions) => SluiceShape;
      },
    ) => Promise<void>,
    overrides: Parameters<typeof withSluice>[3] = {},
  ): Promise<void> {
    const opened: [SluiceVariant, SluiceShape][] = [];
    try {
      await withSluice(
        postgres(),
        sql,
        async (fixture) => {
          const openVariant = (variant: SluiceVariant, options: SluiceOptions) => {
            const client = openSluice(fixture.url, { ...variant.options, ...options });
            opened.push([variant, client]);
            return client;
          };
          await body({
            ...fixture,
            openVariant,
            pair: (options) => ({
              official: fixture.open(options),
              sluice: variants.map((variant) => openVariant(variant, options)),
            }),
          });
          for (const [variant, client] of opened) variant.verify?.(client);
        },
        overrides,
      );
    } finally {
      for (const [, client] of opened) client.close();
    }
  }

  describe('every client: basic sync', () => {
    test('an empty table syncs to no rows, then the first row arrives', async () => {
      await withAll(ITEMS, async ({ db, pair: open }) => {
        const pair = open({ params: items });
        for (const rows of await allRows(pair)) assert.deepEqual(rows, []);
        await db.query(`INSERT INTO items VALUES (1, 'first', 10)`);
        await waitForAll(pair, (r) => r.length === 1);
        for (const client of pair.sluice)
          assert.deepEqual(client.shape.currentRows, [{ id: 1, title: 'first', n: 10 }]);
        await assertAllMatch(db, items, pair);
      });
    });

    test('initial data arrives complete', async () => {
      const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i * 2 FROM generate_series(1, 300) i;
        INSERT INTO items VALUES (301, NULL, NULL), (302, '', 0);`;
      await withAll(sql, async ({ db, pair: open }) => {
        const pair = open({ params: items });
        for (const rows of await allRows(pair)) {
          assert.equal(rows.length, 302);
          assert.ok(rows.some((r) => r.id === 301 && r.title === null && r.n === null));
        }
        await assertAllMatch(db, items, pair);
      });
    });

    test('inserts, updates and deletes (also several in one transaction) are applied', async () => {
      const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 10) i;`;
      await withAll(sql, async ({ db, pair: open }) => {
        const pair = open({ params: items });
        const officialMessages = recordMessages(pair.official);
        await allRows(pair);
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
        await waitForAll(pair, (rows) => rows.some((r) => r.id === 12 && r.n === 112));
        await assertAllMatch(db, items, pair);
        // replica=default: an update carries the key and the changed columns, a delete the key.
        for (const changes of [
          ...pair.sluice.map(sluiceChanges),
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
      await withAll(sql, async ({ db, pair: open }) => {
        const pair = open({ params: items });
        await allRows(pair);
        await db.query(`UPDATE items SET id = 100, title = 'moved' WHERE id = 1`);
        await db.query(`UPDATE items SET id = id + 1000 WHERE id IN (2, 3)`);
        await waitForAll(pair, (rows) => rows.some((r) => r.id === 1003));
        await assertAllMatch(db, items, pair);
        assert.ok(!pair.official.shape.currentRows.some((r) => [1, 2, 3].includes(r.id as number)));
      });
    });

    test('two primary keys swapped in one transaction stay two rows', async () => {
      const sql = `CREATE TABLE items (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, title text, n int);
        INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);`;
      await withAll(sql, async ({ db, pair: open }) => {
        const pair = open({ params: items });
        await allRows(pair);
        await db.query(`UPDATE items SET id = 3 - id + 2 WHERE id IN (2, 3)`); // 2 <-> 3
        await db.query(`INSERT INTO items VALUES (4, 'marker', 4)`);
        await waitForAll(pair, (rows) => rows.some((r) => r.id === 4));
        await assertAllMatch(db, items, pair);
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

  /** What every client must produce for MAX_ROW (the official client's parser.ts). */
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

  describe('every client: column types of docs/protocol.md §4', () => {
    test('snapshot and replicated values parse to the same values in every client', async () => {
      await withAll(TYPES_SQL, async ({ db, pair: open }) => {
        await db.query(`INSERT INTO typed VALUES ${MAX_ROW}`, [1]);
        const pair = open({ params: { table: 'typed' } });
        const [official, ...sluice] = await allRows(pair);
        for (const rows of sluice) {
          assert.deepEqual(rows, [maxRowParsed(1)]);
          assert.deepEqual(rows, official);
        }

        await db.query(`INSERT INTO typed VALUES ${MAX_ROW}`, [2]);
        await db.query(`INSERT INTO typed (id) VALUES (3)`);
        await db.query(
          `INSERT INTO typed (id, i2, i4, i8) VALUES (4, -32768, -2147483648, -9223372036854775808)`,
        );
        await db.query(
          `UPDATE typed SET b = false, f8 = '-Infinity', a_t = '{}', jb = '[]', m = 'sad' WHERE id = 1`,
        );
        await waitForAll(pair, (r) => r.length === 4 && r.some((x) => x.m === 'sad'));
        for (const client of pair.sluice) {
          const byId = new Map(client.shape.currentRows.map((row) => [row.id, row]));
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
        }
        // assertAllMatch also holds the official client's rows to these same values.
        await assertAllMatch(db, { table: 'typed' }, pair);
        // The replicated messages themselves (not only the rows) parse alike.
        const officialMessages = recordMessages(pair.official);
        await db.query(`UPDATE typed SET a_f8 = '{NaN}', i8 = 1 WHERE id = 2`);
        await waitForAll(pair, (r) => r.some((x) => x.i8 === 1n));
        const lastOfficial = officialMessages.filter(isOfficialChange).at(-1);
        for (const client of pair.sluice)
          assert.deepEqual(sluiceChanges(client).at(-1)?.value, lastOfficial?.value);
      });
    });
  });

  describe('every client: identifiers and projections', () => {
    const ODD_SQL = `
      CREATE TABLE "My, ""odd"" table" (id int PRIMARY KEY, "first name" text, "a,b" text, "q""x" text, "Upper" int);
      INSERT INTO "My, ""odd"" table" VALUES (1, 'Ann', 'x,y', 'q"1', 1);
      CREATE SCHEMA "Sch. 1";
      CREATE TABLE "Sch. 1"."My, ""odd"" table" (
        "Id" int PRIMARY KEY, "first name" text, "a,b" text, "q""x" text, "Upper" int, "hidden col" text);
      INSERT INTO "Sch. 1"."My, ""odd"" table" VALUES (1, 'Bob', 'p,q', 'q"2', 2, 'secret');`;

    test('table and column names with spaces, commas, dots and quotes', async () => {
      await withAll(ODD_SQL, async ({ db, pair: open }) => {
        const plain = open({ params: { table: '"My, ""odd"" table"' } });
        const projected = open({
          params: {
            table: '"Sch. 1"."My, ""odd"" table"',
            columns: ['Id', 'first name', 'a,b', 'q"x', 'Upper'],
          },
        });
        const [plainRows, projectedRows] = await Promise.all([allRows(plain), allRows(projected)]);
        for (const rows of plainRows ?? []) {
          assert.deepEqual(rows, [
            { id: 1, 'first name': 'Ann', 'a,b': 'x,y', 'q"x': 'q"1', Upper: 1 },
          ]);
        }
        for (const rows of projectedRows ?? []) {
          assert.deepEqual(rows, [
            { Id: 1, 'first name': 'Bob', 'a,b': 'p,q', 'q"x': 'q"2', Upper: 2 },
          ]);
        }
        await db.query(`INSERT INTO "My, ""odd"" table" VALUES (2, 'Cy', 'a/b', '"', 3)`);
        await db.query(`UPDATE "My, ""odd"" table" SET "q""x" = 'q""' WHERE id = 1`);
        await db.query(
          `INSERT INTO "Sch. 1"."My, ""odd"" table" VALUES (2, 'Di', ',', '""', 4, 'x')`,
        );
        await db.query(`UPDATE "Sch. 1"."My, ""odd"" table" SET "a,b" = '/', "hidden col" = 'y'`);
        await db.query(`DELETE FROM "Sch. 1"."My, ""odd"" table" WHERE "Id" = 1`);
        await assertAllMatch(db, { table: 'My, "odd" table' }, plain);
        const projectedSpec = {
          schema: 'Sch. 1',
          table: 'My, "odd" table',
          columns: ['Id', 'first name', 'a,b', 'q"x', 'Upper'],
        };
        await assertAllMatch(db, projectedSpec, projected);
      });
    });

    test('a columns projection serves only those columns, through snapshot and changes', async () => {
      const sql = `CREATE TABLE items (id int PRIMARY KEY, title text, secret text, n int);
        INSERT INTO items SELECT i, 'row ' || i, 'hidden', i FROM generate_series(1, 20) i;`;
      await withAll(sql, async ({ db, pair: open }) => {
        const pair = open({ params: { table: 'items', columns: ['id', 'title'] } });
        for (const rows of await allRows(pair)) {
          assert.equal(rows.length, 20);
          assert.deepEqual(Object.keys(rows[0] ?? {}).sort(), ['id', 'title']);
        }
        await db.query(`INSERT INTO items VALUES (21, 'new', 'hidden', 21)`);
        await db.query(`UPDATE items SET secret = 'only hidden changed' WHERE id = 1`);
        await db.query(`UPDATE items SET title = 'visible', n = 0 WHERE id = 2`);
        await db.query(`DELETE FROM items WHERE id = 3`);
        await waitForAll(pair, (r) => r.some((x) => x.title === 'visible'));
        await assertAllMatch(db, { table: 'items', columns: ['id', 'title'] }, pair);
        for (const row of pair.official.shape.currentRows)
          assert.deepEqual(Object.keys(row).sort(), ['id', 'title']);
      });
    });
  });

  describe('every client: replica, log and offset options', () => {
    test("replica: 'full' updates carry the whole row and old values", async () => {
      const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 5) i;`;
      await withAll(sql, async ({ db, pair: open }) => {
        const pair = open({ params: { table: 'items', replica: 'full' } });
        const officialMessages = recordMessages(pair.official);
        await allRows(pair);
        await db.query(`UPDATE items SET n = 100 WHERE id = 1`);
        await db.query(`DELETE FROM items WHERE id = 2`);
        await db.query(`INSERT INTO items VALUES (6, 'six', 6)`);
        await waitForAll(pair, (rows) => rows.some((r) => r.id === 6));
        for (const changes of [
          ...pair.sluice.map(sluiceChanges),
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
        await assertAllMatch(db, items, pair);
      });
    });

    test("log: 'changes_only' leaves out rows that existed before subscribing", async () => {
      const sql = `${ITEMS} INSERT INTO items SELECT i, 'old ' || i, i FROM generate_series(1, 50) i;`;
      await withAll(sql, async ({ db, pair: open }) => {
        const pair = open({ params: items, log: 'changes_only' });
        for (const rows of await allRows(pair)) assert.deepEqual(rows, []);
        await db.query(`INSERT INTO items SELECT i, 'new ' || i, i FROM generate_series(51, 60) i`);
        await db.query(`UPDATE items SET n = -1 WHERE id IN (1, 51)`); // 1 is unknown to the clients
        await db.query(`DELETE FROM items WHERE id IN (2, 52)`);
        await waitForAll(pair, (rows) => rows.some((r) => r.id === 51 && r.n === -1));
        await assertAllMatch(db, { ...items, where: 'id > 50' }, pair);
      });
    });

    test("offset: 'now' skips the existing rows and follows later changes", async () => {
      const sql = `${ITEMS} INSERT INTO items SELECT i, 'old ' || i, i FROM generate_series(1, 20) i;`;
      await withAll(sql, async ({ db, pair: open }) => {
        const pair = open({ params: items, offset: 'now' });
        for (const rows of await allRows(pair)) assert.deepEqual(rows, []);
        await db.query(`INSERT INTO items VALUES (21, 'new', 21), (22, 'new', 22)`);
        await db.query(`DELETE FROM items WHERE id = 22`);
        await waitForAll(pair, (rows) => rows.some((r) => r.id === 21));
        await assertAllMatch(db, { ...items, where: 'id > 20' }, pair);
      });
    });
  });

  describe('every client: chunks, resume, refetch', () => {
    test('5,000 rows in 10 kB chunks sync completely, then changes follow', async () => {
      const sql = `${ITEMS} INSERT INTO items
        SELECT i, 'row ' || i || ' ' || repeat('x', i % 97), i FROM generate_series(1, 5000) i;`;
      await withAll(
        sql,
        async ({ db, pair: open }) => {
          const pair = open({ params: items });
          for (const rows of await allRows(pair)) assert.equal(rows.length, 5000);
          await db.query(`UPDATE items SET n = -n WHERE id % 100 = 0`);
          await db.query(`DELETE FROM items WHERE id BETWEEN 10 AND 19`);
          await db.query(`INSERT INTO items VALUES (5001, 'last', 0)`);
          await waitForAll(pair, (r) => r.some((x) => x.id === 5001));
          await assertAllMatch(db, items, pair);
        },
        { chunkBytes: 10_240 },
      );
    });

    test('a stream resumed from a stored offset and handle sees only later changes', async () => {
      await withAll(ITEMS, async ({ db, openVariant }) => {
        for (const variant of variants) {
          // Each variant in turn, from the same ten rows.
          await db.query(
            `DELETE FROM items; INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 10) i`,
          );
          const first = openVariant(variant, { params: items });
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

          const resumed = openVariant(variant, { params: items, offset, handle });
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
            assert.deepEqual(
              seen,
              ['insert 12', 'insert 13', 'update 2', 'delete 3', 'delete 12'],
              variant.name,
            );
          } finally {
            resumed.close();
          }
        }
      });
    });

    test('after DELETE of the shape every client gets a 409, refetches and ends equal', async () => {
      const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 50) i;`;
      await withAll(
        sql,
        async ({ db, url, pair: open }) => {
          const pair = open({ params: items });
          await allRows(pair);
          const firstHandle = pair.sluice[0]?.stream.shapeHandle;
          assert.ok(firstHandle);
          const deleted = await fetch(`${url}?table=items`, { method: 'DELETE' });
          assert.equal(deleted.status, 202);
          await db.query(`INSERT INTO items VALUES (51, 'after delete', 51)`);
          await db.query(`DELETE FROM items WHERE id = 1`);
          await waitForAll(pair, (r) => r.some((x) => x.id === 51) && !r.some((x) => x.id === 1));
          for (const client of pair.sluice) {
            assert.notEqual(client.stream.shapeHandle, firstHandle);
            const refetches = client.messages.filter(
              (m) => !isChangeMessage(m) && m.headers.control === 'must-refetch',
            );
            assert.equal(refetches.length, 1, 'one must-refetch');
          }
          await db.query(`INSERT INTO items VALUES (52, 'on the new handle', 52)`);
          await waitForAll(pair, (r) => r.some((x) => x.id === 52));
          await assertAllMatch(db, items, pair);
        },
        { enableShapeDelete: true },
      );
    });

    test('several clients in parallel while writes stream in all end equal', async () => {
      const sql = `${ITEMS} INSERT INTO items SELECT i, 'row ' || i, i FROM generate_series(1, 200) i;`;
      await withAll(sql, async ({ db, pair: open }) => {
        const early = open({ params: items });
        await allRows(early);
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
          await waitForAll(pair, (r) => r.some((x) => x.id === id - 1));
          await assertAllMatch(db, items, pair);
        }
      });
    });
  });
}
