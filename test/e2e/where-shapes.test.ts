// Filtered shapes (docs/protocol.md §2 `where` and `params`) with the official @electric-sql/client:
// snapshots and changes through where clauses, params, odd column names, rows moving in and out
// of a shape under both replica modes, many equality shapes on one table, and the 400s for
// clauses and params that cannot make a shape. Every sync ends with the oracle.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isChangeMessage, type ChangeMessage } from '@electric-sql/client';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import {
  assertMatchesPostgres,
  recordMessages,
  unrefClientSaveTimers,
  waitForRows,
  withSluice as withPostgresSluice,
  type SluiceFixture,
} from '../support/shape-oracle.js';
import { get } from './shape-http-helpers.js';

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

const ITEMS = `CREATE TABLE items (id int PRIMARY KEY, title text, n int, tags text[]);
  INSERT INTO items SELECT i, 'item ' || i, i % 10, ARRAY['t' || (i % 3)]
    FROM generate_series(1, 100) i;`;

describe('where clauses with the official client', () => {
  test('snapshot and changes follow the clause; updates move rows in and out', async () => {
    await withSluice(ITEMS, async ({ db, open }) => {
      const where = `n >= 5 AND title LIKE 'item 1%'`;
      const opened = open({ params: { table: 'items', where } });
      const messages = recordMessages(opened);
      const rows = await opened.shape.rows;
      assert.equal(rows.length, 5); // of "item 1…", only 15..19 have n >= 5
      await db.query(
        `INSERT INTO items VALUES (101, 'item 101', 7, '{}'), (102, 'item 102', 1, '{}')`,
      );
      await db.query(`UPDATE items SET n = 9 WHERE id = 11`); // moves in
      await db.query(`UPDATE items SET n = 0 WHERE id = 15`); // moves out
      await db.query(`UPDATE items SET title = 'item 1x' WHERE id = 16`); // stays in
      await db.query(`UPDATE items SET title = 'other' WHERE id = 2`); // stays out
      await db.query(`DELETE FROM items WHERE id IN (17, 3)`);
      await waitForRows(opened.shape, (r) => r.some((row) => row.id === 11));
      await assertMatchesPostgres(db, { table: 'items', where }, opened.shape);
      const changes = messages.filter(isChangeMessage) as ChangeMessage[];
      const of = (id: number) => changes.filter((m) => m.value.id === id);
      // A row that starts matching arrives whole, as an insert.
      assert.deepEqual(
        of(11).map((m) => [m.headers.operation, m.value]),
        [['insert', { id: 11, title: 'item 11', n: 9, tags: ['t2'] }]],
      );
      // One that stops matching leaves as a delete of its key (replica=default).
      assert.deepEqual(
        of(15)
          .filter((m) => m.headers.operation !== 'insert')
          .map((m) => [m.headers.operation, m.value]),
        [['delete', { id: 15 }]],
      );
      assert.equal(of(2).length, 0, 'rows outside the shape never show');
      assert.equal(of(102).length, 0);
    });
  });

  test('replica=full: moved-out rows are deleted whole, moved-in rows inserted whole', async () => {
    await withSluice(ITEMS, async ({ db, open }) => {
      const where = `n = 3`;
      const opened = open({ params: { table: 'items', where, replica: 'full' } });
      const messages = recordMessages(opened);
      await opened.shape.rows;
      await db.query(`UPDATE items SET n = 3 WHERE id = 1`);
      await db.query(`UPDATE items SET n = 4 WHERE id = 13`);
      await db.query(`UPDATE items SET title = 'renamed' WHERE id = 23`);
      await waitForRows(opened.shape, (r) => r.some((row) => row.title === 'renamed'));
      await assertMatchesPostgres(db, { table: 'items', where }, opened.shape);
      const changes = (messages.filter(isChangeMessage) as ChangeMessage[]).map((m) => [
        m.headers.operation,
        m.value,
      ]);
      assert.deepEqual(changes.slice(-3), [
        ['insert', { id: 1, title: 'item 1', n: 3, tags: ['t1'] }],
        ['delete', { id: 13, title: 'item 13', n: 3, tags: ['t1'] }],
        ['update', { id: 23, title: 'renamed', n: 3, tags: ['t2'] }],
      ]);
    });
  });

  test('params, a primary key change across the boundary, and a transaction of many moves', async () => {
    await withSluice(ITEMS, async ({ db, open }) => {
      const opened = open({
        params: { table: 'items', where: 'n = $1 AND $2 = ANY(tags)', params: ['2', 't0'] },
      });
      const where = `n = 2 AND 't0' = ANY(tags)`;
      await opened.shape.rows;
      await assertMatchesPostgres(db, { table: 'items', where }, opened.shape);
      await db.query(`BEGIN;
        UPDATE items SET id = 1000 WHERE id = 12;   -- in the shape, key changes
        UPDATE items SET id = 1001, n = 5 WHERE id = 42; -- key changes and moves out
        UPDATE items SET n = 2 WHERE id = 3;         -- t0, moves in
        INSERT INTO items VALUES (1002, 'new', 2, '{t0,t9}');
        COMMIT;`);
      await waitForRows(opened.shape, (r) => r.some((row) => row.id === 1002));
      await assertMatchesPostgres(db, { table: 'items', where }, opened.shape);
    });
  });

  test('quoted, mixed-case and special-character column names', async () => {
    const sql = `CREATE TABLE "Odd Table" ("Id" int PRIMARY KEY, "Weird ""Col"", name" text, "Mixed Case" int);
      INSERT INTO "Odd Table" SELECT i, 'v' || (i % 4), i FROM generate_series(1, 40) i;`;
    await withSluice(sql, async ({ db, open }) => {
      const where = `"Weird ""Col"", name" = 'v1' AND "Mixed Case" > 10`;
      const opened = open({ params: { table: '"Odd Table"', where } });
      assert.equal((await opened.shape.rows).length, 7);
      await db.query(`UPDATE "Odd Table" SET "Weird ""Col"", name" = 'v1' WHERE "Id" = 12`);
      await db.query(`UPDATE "Odd Table" SET "Mixed Case" = 0 WHERE "Id" = 13`);
      await waitForRows(opened.shape, (r) => r.some((row) => row.Id === 12));
      await assertMatchesPostgres(db, { table: 'Odd Table', where }, opened.shape);
    });
  });

  test('a row on which the clause raises an error is not in the shape; the stream goes on', async () => {
    await withSluice(ITEMS, async ({ db, open, url }) => {
      await db.query(`DELETE FROM items WHERE n = 0`);
      const where = '100 / n > 20';
      const opened = open({ params: { table: 'items', where } });
      await opened.shape.rows;
      // n = 0: Postgres would raise division by zero for this row; n = 1 matches.
      await db.query(`INSERT INTO items VALUES (500, 'zero', 0, '{}')`);
      await db.query(`INSERT INTO items VALUES (501, 'one', 1, '{}')`);
      await db.query(`UPDATE items SET n = 2147483647 WHERE id = 1`);
      await waitForRows(opened.shape, (r) => r.some((row) => row.id === 501));
      const ids = opened.shape.currentRows.map((row) => row.id);
      assert.ok(!ids.includes(500));
      await assertMatchesPostgres(
        db,
        { table: 'items', where: `n <> 0 AND ${where}` },
        opened.shape,
      );
      // A new shape with the same clause now meets the n = 0 row in its snapshot: Postgres fails
      // that query, so the request is a 400 naming the cause, never a 5xx retried forever.
      const reply = await get(url, { table: 'items', offset: '-1', where: `${where} AND id > 0` });
      assert.equal(reply.status, 400, reply.text);
      assert.match(reply.text, /division by zero/);
    });
  });

  test('a hundred equality shapes on one table each get exactly their rows', async () => {
    await withSluice(ITEMS, async ({ db, open }) => {
      const shapes = Array.from({ length: 100 }, (_, i) =>
        i % 2 === 0
          ? { where: 'id = $1', params: [String(i + 1)], oracle: `id = ${i + 1}` }
          : {
              where: `id IN (${i + 1}, ${i + 201})`,
              params: undefined,
              oracle: `id IN (${i + 1}, ${i + 201})`,
            },
      );
      const opened = shapes.map((s) =>
        open({
          params: { table: 'items', where: s.where, ...(s.params ? { params: s.params } : {}) },
        }),
      );
      await Promise.all(opened.map((o) => o.shape.rows));
      await db.query(`UPDATE items SET title = 'changed ' || id WHERE id % 7 = 0`);
      await db.query(
        `INSERT INTO items SELECT i, 'late', 1, '{}' FROM generate_series(201, 300) i`,
      );
      await db.query(`DELETE FROM items WHERE id % 11 = 0`);
      for (const [i, o] of opened.entries()) {
        await assertMatchesPostgres(db, { table: 'items', where: shapes[i]!.oracle }, o.shape);
      }
    });
  });
});

describe('where clauses and params that cannot make a shape (400)', () => {
  const errorsOf = async (url: string, params: Record<string, string>) => {
    const reply = await get(url, { table: 'items', offset: '-1', ...params });
    assert.equal(reply.status, 400, reply.text);
    assert.equal(reply.headers.get('cache-control'), 'no-store');
    return (reply.json() as { errors: Record<string, string[]> }).errors;
  };

  test('syntax errors name the parser position, as Electric does', async () => {
    await withSluice(ITEMS, async ({ url }) => {
      assert.deepEqual(await errorsOf(url, { where: '1 x 1' }), {
        where: ['At location 17: syntax error at or near "x"'],
      });
    });
  });

  test('each kind of problem has its own message', async () => {
    await withSluice(ITEMS, async ({ url }) => {
      const cases: [Record<string, string>, string, RegExp][] = [
        [{ where: 'nope = 1' }, 'where', /column "nope" does not exist/],
        [{ where: 'n + 1' }, 'where', /must be type boolean, not type integer/],
        [{ where: "n = 'abc'" }, 'where', /invalid input syntax for type integer: "abc"/],
        [{ where: 'title > 1' }, 'where', /operator|cannot/],
        [{ where: 'n = $1' }, 'params', /params\[1\] is not given/],
        [{ where: 'n = $1', 'params[1]': 'x' }, 'params', /params\[1\]: invalid input syntax/],
        [{ where: 'n = $1', 'params[2]': '1' }, 'params', /params\[1\] is missing/],
        [
          { where: 'n = $1', 'params[1]': '1', 'params[2]': '2' },
          'params',
          /params\[2\] is not used/,
        ],
        [{ where: 'n = $1', 'params[01]': '1' }, 'params', /integers from 1 to 999999/],
        [{ 'params[1]': '1' }, 'params', /without a where clause/],
        [{ where: '1/0 = 1' }, 'where', /division by zero/],
      ];
      for (const [params, field, message] of cases) {
        const errors = await errorsOf(url, params);
        assert.match(errors[field]?.join(' ') ?? '', message, JSON.stringify({ params, errors }));
      }
    });
  });

  test('injection attempts are refused and leave the database untouched', async () => {
    await withSluice(ITEMS, async ({ db, url }) => {
      const attempts = [
        '1=1; DROP TABLE items',
        'true; DELETE FROM items',
        'id = 1 OR pg_sleep(5) IS NULL',
        'id = (SELECT 1)',
        'EXISTS (SELECT 1 FROM pg_user)',
        "current_setting('data_directory') = ''",
        'id = 1) OR (1=1',
        'title = $$x$$; DROP TABLE items; --',
        'title = $q$x$q$',
        "U&'\\0041' = title",
        'U&"title" = \'x\'',
        'true UNION SELECT 1',
        'true ORDER BY 1',
        'id = 1 /* */ ; TRUNCATE items',
        'title = \'x\' COLLATE "de_DE"',
        'items.id = 1',
        "lo_import('/etc/passwd') = 1",
        // Subqueries are allowed, but only over tables the table policy serves.
        'id IN (SELECT usesysid FROM pg_catalog.pg_user)',
        'CASE WHEN true THEN true END',
      ];
      const started = Date.now();
      for (const where of attempts) {
        const errors = await errorsOf(url, { where });
        assert.ok(errors.where?.length, `${where}: ${JSON.stringify(errors)}`);
      }
      assert.ok(Date.now() - started < 5_000, 'no pg_sleep ran');
      const { rows } = await db.query<{ count: string }>(
        'SELECT count(*)::text AS count FROM items',
      );
      assert.equal(rows[0]!.count, '100');
    });
  });
});
