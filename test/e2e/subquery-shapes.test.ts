// Subquery shapes (docs/protocol.md, "Subqueries"): where clauses with IN (SELECT …) follow
// changes of the tables their subqueries read, with move-in and move-out events and tags.
// Every sync ends with the oracle, followed by @sluice/client, whose Shape applies the events.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Row } from '@electric-sql/client';
import { PATHS } from '@sluice/protocol';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import {
  assertMatchesPostgres,
  unrefClientSaveTimers,
  withSluice as withPostgresSluice,
  type SluiceFixture,
} from '../support/shape-oracle.js';
import { SluiceFollower } from '../support/sluice-follower.js';
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

const BLOG = `
  CREATE TABLE users (id int PRIMARY KEY, active boolean NOT NULL, org int);
  CREATE TABLE posts (id int PRIMARY KEY, author int, title text);
  INSERT INTO users SELECT i, i % 2 = 0, i % 3 FROM generate_series(1, 10) i;
  INSERT INTO posts SELECT i, 1 + i % 10, 'post ' || i FROM generate_series(1, 40) i;`;

/** The follower's rows, for the oracle (both clients parse values alike). */
const rowsOf = (follower: SluiceFollower) => () => follower.rows as unknown as readonly Row[];

async function follow(
  fixture: SluiceFixture,
  where: string,
  body: (follower: SluiceFollower) => Promise<void>,
): Promise<void> {
  const follower = new SluiceFollower(fixture.url, { params: { table: 'posts', where } });
  try {
    await assertMatchesPostgres(fixture.db, { table: 'posts', where }, rowsOf(follower));
    await body(follower);
    await assertMatchesPostgres(fixture.db, { table: 'posts', where }, rowsOf(follower));
  } finally {
    follower.close();
  }
}

describe('subquery shapes', () => {
  test('rows move in and out as the inner table changes', async () => {
    await withSluice(BLOG, async (fixture) => {
      const where = 'author IN (SELECT id FROM users WHERE active)';
      await follow(fixture, where, async (follower) => {
        const { db } = fixture;
        await db.query('UPDATE users SET active = true WHERE id = 3'); // move-in
        await assertMatchesPostgres(db, { table: 'posts', where }, rowsOf(follower));
        await db.query('UPDATE users SET active = false WHERE id = 4'); // move-out
        await assertMatchesPostgres(db, { table: 'posts', where }, rowsOf(follower));
        await db.query(`INSERT INTO posts VALUES (100, 3, 'new'), (101, 5, 'out')`);
        await db.query('UPDATE posts SET author = 4 WHERE id = 100'); // out with its author
        await db.query('UPDATE posts SET author = 6 WHERE id = 101'); // in
        await db.query(
          'BEGIN; UPDATE users SET active = true WHERE id = 5; INSERT INTO posts VALUES (102, 5, $$x$$); COMMIT',
        );
      });
    });
  });

  test('NOT IN, composite and nested subqueries, OR with a plain condition', async () => {
    await withSluice(BLOG, async (fixture) => {
      const { db } = fixture;
      const clauses = [
        'author NOT IN (SELECT id FROM users WHERE active)',
        `(id, author) IN (SELECT id, author FROM posts WHERE title LIKE 'post 1%')`,
        'id IN (SELECT id FROM posts WHERE author IN (SELECT id FROM users WHERE org = 2))',
        `title = 'post 7' OR author IN (SELECT id FROM users WHERE active AND org = 0)`,
      ];
      for (const where of clauses) {
        await follow(fixture, where, async () => {
          await db.query('UPDATE users SET active = NOT active WHERE id IN (1, 2)');
          await db.query('UPDATE users SET org = (org + 1) % 3 WHERE id IN (3, 6, 9)');
          await db.query(`UPDATE posts SET author = 2 WHERE id IN (7, 8)`);
          await db.query(`UPDATE posts SET title = 'post 1x' WHERE id IN (2, 3)`);
          await db.query(`UPDATE posts SET title = 'moved' WHERE id IN (10, 11)`);
        });
      }
    });
  });

  test('bool columns in a subquery: rows match, move in and out (results as Postgres writes rows)', async () => {
    // A subquery's bool read with ::text is 'true', a row's bool as replication and snapshots
    // write it is 't': they must compare equal, or rows get tags no event ever moves.
    const sql = `
      CREATE TABLE users (id int PRIMARY KEY, active boolean NOT NULL);
      CREATE TABLE posts (id int PRIMARY KEY, author int NOT NULL, published boolean NOT NULL);
      INSERT INTO users SELECT i, i % 2 = 0 FROM generate_series(1, 6) i;
      INSERT INTO posts SELECT i, 1 + i % 6, i % 3 = 0 FROM generate_series(1, 24) i;`;
    await withSluice(sql, async ({ db, url }) => {
      for (const where of [
        '(author, published) IN (SELECT id, active FROM users)',
        'published IN (SELECT active FROM users WHERE id = 2)',
      ]) {
        const follower = new SluiceFollower(url, { params: { table: 'posts', where } });
        try {
          const check = () =>
            assertMatchesPostgres(db, { table: 'posts', where }, rowsOf(follower));
          await check();
          await db.query('UPDATE users SET active = NOT active WHERE id IN (1, 2)');
          await check();
          await db.query('UPDATE posts SET published = NOT published WHERE id IN (1, 2, 3)');
          await check();
          await db.query('UPDATE users SET active = NOT active WHERE id = 2');
          await check();
        } finally {
          follower.close();
        }
      }
    });
  });

  test('the wire: tags on rows, move-out and move-in events', async () => {
    await withSluice(BLOG, async ({ db, url }) => {
      const where = 'author IN (SELECT id FROM users WHERE active)';
      const first = await get(url, { table: 'posts', where, offset: '-1' });
      assert.equal(first.status, 200);
      const rows = first.json() as { headers: Record<string, unknown> }[];
      const row = rows.find((m) => m.headers.operation === 'insert')!;
      assert.match(String((row.headers.tags as string[])[0]), /^[0-9a-f]{32}$/);
      assert.deepEqual(row.headers.active_conditions, [true]);
      const handle = first.headers.get('electric-handle')!;
      const offset = first.headers.get('electric-offset')!;
      await db.query('UPDATE users SET active = false WHERE id = 2');
      const live = await get(url, { table: 'posts', where, handle, offset, live: 'true' });
      const messages = live.json() as { headers: Record<string, unknown> }[];
      const event = messages.find((m) => m.headers.event === 'move-out')!;
      assert.ok(event, JSON.stringify(messages));
      assert.equal((event.headers.patterns as unknown[]).length, 1);
    });
  });

  test('shapes created while their inner table keeps changing are kept, not started over', async () => {
    // A creation's last metadata write and a flush that saves new results (issued by the
    // replication stream for the same shape) once ran side by side: both wrote the metadata's
    // temporary file, one rename failed, the creation deleted the shape and the stream's flush
    // then met a closed log (replication restarted, clients were sent to refetch).
    await withSluice(BLOG, async ({ db, sluice, url }) => {
      const followed: { where: string; handle: string; offset: string }[] = [];
      let writing = true;
      const writer = (async () => {
        for (let i = 0; writing; i++) {
          await db.query('UPDATE users SET active = NOT active WHERE id = $1', [1 + (i % 10)]);
        }
      })();
      try {
        // Four creations at a time, each followed to the end of its log as a client does.
        const follow = async (n: number) => {
          const where = `author IN (SELECT id FROM users WHERE active) AND id > ${n}`;
          let response = await get(url, { table: 'posts', where, offset: '-1' });
          assert.equal(response.status, 200, response.text);
          const handle = response.headers.get('electric-handle')!;
          while (response.headers.get('electric-up-to-date') === null) {
            const offset = response.headers.get('electric-offset')!;
            response = await get(url, { table: 'posts', where, handle, offset });
            assert.equal(response.status, 200, `${where}: ${response.text}`);
          }
          followed.push({ where, handle, offset: response.headers.get('electric-offset')! });
        };
        for (let n = 0; n < 80; n += 4) {
          await Promise.all([n, n + 1, n + 2, n + 3].map(follow));
        }
      } finally {
        writing = false;
        await writer;
      }
      // Every shape is still there under the handle its client has: none was deleted.
      for (const { where, handle, offset } of followed) {
        const response = await get(url, { table: 'posts', where, handle, offset });
        assert.equal(response.status, 200, `${where}: ${response.text}`);
      }
      // The stream never stopped for a failed write: it would have gone to fallback meanwhile.
      const metrics = await (await fetch(`${sluice.baseUrl}${PATHS.metrics}`)).text();
      assert.doesNotMatch(
        metrics,
        /sluice_state_transitions_total\{[^}]*to="fallback"[^}]*\} [1-9]/,
      );
    });
  });

  test('unsupported subqueries are 400s naming the problem', async () => {
    await withSluice(BLOG, async ({ url }) => {
      const cases: [string, RegExp][] = [
        ['EXISTS (SELECT 1 FROM users)', /EXISTS subqueries are not supported/],
        ['author IN (SELECT id FROM users LIMIT 1)', /no DISTINCT, GROUP BY/],
        ['author IN (SELECT id, org FROM users)', /2 columns/],
        ['author IN (SELECT id FROM nope)', /does not exist/],
        ['title IN (SELECT id FROM users)', /cannot be compared/],
        ['(author IN (SELECT id FROM users)) IS TRUE', /only be combined with AND, OR and NOT/],
      ];
      for (const [where, message] of cases) {
        const response = await get(url, { table: 'posts', where, offset: '-1' });
        const body = response.text;
        assert.equal(response.status, 400, `${where}: ${body}`);
        assert.match(body, message, where);
      }
    });
  });
});
