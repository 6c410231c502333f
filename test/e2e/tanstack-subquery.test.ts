// TanStack DB over subquery shapes (issue 18): collections whose where clauses read other tables
// (`post IN (SELECT id FROM posts WHERE author IN (SELECT id FROM users WHERE "isActive"))`, and
// `"userId" IN (SELECT id FROM users WHERE "isActive" = true)` with quoted camelCase columns),
// in eager and on-demand sync modes. Rows move in and out as users are activated and
// deactivated (again and again), rows change their tags while staying in, several rows change in
// one transaction, and a live query joins two subquery shapes. After every step the collection,
// or the live query, equals the same query in Postgres.
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { createLiveQueryCollection, eq, gt, like, or } from '@tanstack/db';
import type { Row } from '@electric-sql/client';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import { unrefClientSaveTimers, withSluice } from '../support/shape-oracle.js';
import { isSubsetRequest } from '../support/tanstack-items.js';
import { tableCollection, type TableCollectionHandle } from '../support/tanstack-table.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const SCHEMA = `
  CREATE TABLE users (id int PRIMARY KEY, "isActive" bool NOT NULL, name text NOT NULL);
  CREATE TABLE posts (id int PRIMARY KEY, author int NOT NULL, title text NOT NULL);
  CREATE TABLE comments (id int PRIMARY KEY, post int NOT NULL, body text NOT NULL);
  CREATE TABLE todos (id int PRIMARY KEY, "userId" int NOT NULL, title text NOT NULL);
  INSERT INTO users SELECT i, i % 2 = 1, 'user ' || i FROM generate_series(1, 6) i;
  INSERT INTO posts SELECT i, 1 + i % 6, 'post ' || i FROM generate_series(1, 18) i;
  INSERT INTO comments SELECT i, 1 + i % 18, (ARRAY['alpha', 'beta', 'gamma'])[1 + i % 3] || ' ' || i
    FROM generate_series(1, 54) i;
  INSERT INTO todos SELECT i, 1 + i % 6, (ARRAY['buy', 'call', 'fix'])[1 + i % 3] || ' ' || i
    FROM generate_series(1, 30) i;`;

const COMMENTS = {
  table: 'comments',
  where: 'post IN (SELECT id FROM posts WHERE author IN (SELECT id FROM users WHERE "isActive"))',
  columns: ['id', 'post', 'body'],
};
const TODOS = {
  table: 'todos',
  where: '"userId" IN (SELECT id FROM users WHERE "isActive" = true)',
  columns: ['id', 'userId', 'title'],
};
const POSTS = {
  table: 'posts',
  where: 'author IN (SELECT id FROM users WHERE "isActive")',
  columns: ['id', 'author', 'title'],
};

type Comment = { id: number; post: number; body: string };
type Todo = { id: number; userId: number; title: string };

const byId = (a: Row, b: Row) => Number(a.id) - Number(b.id);

/** Waits (up to 20 s) until `rows()` equals the SQL query's rows (both ordered by id). */
async function assertEqualsSql(
  db: TestDatabase,
  what: string,
  rows: () => readonly Row[],
  sql: string,
): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const expected = (await db.query<Row>(sql)).rows.sort(byId);
    const actual = [...rows()].sort(byId);
    if (isDeepStrictEqual(actual, expected)) return;
    if (Date.now() > deadline) assert.deepEqual(actual, expected, `${what} differs from ${sql}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The collection's shape, as SELECT: its columns where its clause holds (and `and`). */
const select = (shape: typeof COMMENTS, and = 'true') =>
  `SELECT ${shape.columns.map((c) => `"${c}"`).join(', ')} FROM ${shape.table} WHERE (${shape.where}) AND (${and})`;

/**
 * The steps every mode goes through, each followed by `check`: deactivate/activate cycles,
 * tag changes of rows that stay in, changes of rows while they are out, multi-row transactions
 * touching the inner and outer tables together.
 */
async function runSteps(db: TestDatabase, check: (step: string) => Promise<void>): Promise<void> {
  await check('initial');
  // User 1 (active) has posts 6, 12, 18 and todos 6, 12, 18, 24, 30.
  await db.query(`UPDATE users SET "isActive" = false WHERE id = 1`);
  await check('deactivate user 1: its todos and its posts’ comments move out');
  await db.query(`UPDATE users SET "isActive" = true WHERE id = 1`);
  await check('activate user 1: they move back in');
  await db.query(`UPDATE users SET "isActive" = false WHERE id = 1`);
  await check('deactivate user 1 again');
  // Changes while out: they must not bring the rows back, and must be there when they return.
  await db.query(`UPDATE todos SET title = 'changed while out' WHERE id = 6;
                  UPDATE comments SET body = 'changed while out' WHERE post = 6`);
  await check('rows of user 1 changed while out');
  await db.query(`UPDATE users SET "isActive" = true WHERE id = 1`);
  await check('activate user 1 a third time');
  // Rows that stay in while the value that admits them changes: their tags change (removed_tags),
  // then the old value moving out must not take them along.
  await db.query(`UPDATE todos SET "userId" = 3 WHERE id = 12;
                  UPDATE posts SET author = 5 WHERE id = 18`);
  await check('todo 12 and post 18 move from user 1 to other active users');
  await db.query(`UPDATE users SET "isActive" = false WHERE id = 1`);
  await check('deactivate user 1: todo 12 and the comments of post 18 stay');
  // A row moves to an inactive user (out), another in from one.
  await db.query(`UPDATE todos SET "userId" = 2 WHERE id = 3;
                  UPDATE todos SET "userId" = 5 WHERE id = 2;
                  UPDATE comments SET post = 1 WHERE id = 7`);
  await check('rows move by their own columns');
  // One transaction: inner and outer tables, moves in and out, inserts and deletes.
  await db.query(`BEGIN;
                  UPDATE users SET "isActive" = NOT "isActive" WHERE id IN (2, 3);
                  INSERT INTO users VALUES (7, true, 'user 7');
                  INSERT INTO posts VALUES (100, 7, 'post 100'), (101, 2, 'post 101');
                  INSERT INTO comments VALUES (500, 100, 'alpha new'), (501, 101, 'beta new'), (502, 3, 'gamma new');
                  INSERT INTO todos VALUES (500, 7, 'buy new'), (501, 3, 'call new');
                  DELETE FROM comments WHERE id IN (4, 5);
                  UPDATE todos SET title = 'fix moved' WHERE id = 4;
                  COMMIT`);
  await check('one transaction over all four tables');
  await db.query(`BEGIN;
                  UPDATE users SET "isActive" = true WHERE id = 1;
                  UPDATE users SET "isActive" = false WHERE id = 1;
                  UPDATE users SET "isActive" = true WHERE id = 1;
                  DELETE FROM users WHERE id = 7;
                  COMMIT`);
  await check('activate, deactivate, activate in one transaction; a user deleted');
  await db.query(`UPDATE users SET "isActive" = NOT "isActive"`);
  await check('every user flipped');
  await db.query(`UPDATE users SET "isActive" = true`);
  await check('everyone active');
}

describe('TanStack DB collections of subquery shapes', () => {
  test('eager: collections equal Postgres through moves; a live join of two subquery shapes', async () => {
    await withSluice(postgres, SCHEMA, async ({ db, url }) => {
      const handles: TableCollectionHandle[] = [COMMENTS, TODOS, POSTS].map((shape) =>
        tableCollection(url, shape, 'eager'),
      );
      const [comments, todos, posts] = handles as [
        TableCollectionHandle,
        TableCollectionHandle,
        TableCollectionHandle,
      ];
      const joined = createLiveQueryCollection((q) =>
        q
          .from({ comment: comments.collection })
          .join(
            { post: posts.collection },
            ({ comment, post }) => eq(comment.post, post.id),
            'inner',
          )
          .select(({ comment, post }) => ({
            id: comment.id,
            body: comment.body,
            title: post.title,
          })),
      );
      try {
        for (const handle of handles) await handle.collection.preload();
        await joined.preload();
        await runSteps(db, async (step) => {
          await assertEqualsSql(db, `comments (${step})`, comments.rows, select(COMMENTS));
          await assertEqualsSql(db, `todos (${step})`, todos.rows, select(TODOS));
          await assertEqualsSql(db, `posts (${step})`, posts.rows, select(POSTS));
          await assertEqualsSql(
            db,
            `the join (${step})`,
            () =>
              joined.toArray.map((row) => ({
                id: row.id,
                body: row.body,
                title: row.title,
              })),
            `SELECT c.id, c.body, p.title FROM comments c JOIN posts p ON p.id = c.post
              WHERE (${COMMENTS.where}) AND (p.${POSTS.where})`,
          );
        });
        for (const handle of handles) assert.deepEqual(handle.streamErrors, []);
      } finally {
        await joined.cleanup();
        for (const handle of handles) await handle.collection.cleanup();
      }
    });
  });

  // Known server bug: subset snapshots of a subquery shape (server/src/shapes/subset-query.ts)
  // carry no tags nor active_conditions, so a collection loaded by them ignores every move-out
  // ("no tag length set yet") and keeps rows that left the shape.
  test(
    'on-demand: live queries with predicates load subsets and follow the moves',
    {},
    async () => {
      await withSluice(postgres, SCHEMA, async ({ db, url }) => {
        const comments = tableCollection<Comment>(url, COMMENTS, 'on-demand');
        const todos = tableCollection<Todo>(url, TODOS, 'on-demand');
        const alphaComments = createLiveQueryCollection((q) =>
          q
            .from({ comment: comments.collection })
            .where(({ comment }) => or(like(comment.body, 'alpha%'), eq(comment.post, 6))),
        );
        const laterTodos = createLiveQueryCollection((q) =>
          q.from({ todo: todos.collection }).where(({ todo }) => gt(todo.id, 10)),
        );
        const plain = (rows: readonly object[], columns: readonly string[]) =>
          rows.map((row) =>
            Object.fromEntries(columns.map((c) => [c, (row as Record<string, unknown>)[c]])),
          ) as Row[];
        try {
          await comments.collection.preload();
          await todos.collection.preload();
          assert.equal(comments.collection.size, 0, 'nothing loaded before a query asks');
          await alphaComments.preload();
          await laterTodos.preload();
          assert.ok(comments.requests.some(isSubsetRequest), 'comments loaded by a subset');
          assert.ok(todos.requests.some(isSubsetRequest), 'todos loaded by a subset');
          await runSteps(db, async (step) => {
            await assertEqualsSql(
              db,
              `alpha comments (${step})`,
              () => plain(alphaComments.toArray, COMMENTS.columns),
              select(COMMENTS, `body LIKE 'alpha%' OR post = 6`),
            );
            await assertEqualsSql(
              db,
              `todos past 10 (${step})`,
              () => plain(laterTodos.toArray, TODOS.columns),
              select(TODOS, 'id > 10'),
            );
          });
          assert.deepEqual(comments.streamErrors, []);
          assert.deepEqual(todos.streamErrors, []);
        } finally {
          await alphaComments.cleanup();
          await laterTodos.cleanup();
          await comments.collection.cleanup();
          await todos.collection.cleanup();
        }
      });
    },
  );
});
