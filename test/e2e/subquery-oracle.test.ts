// The differential oracle of subquery shapes (issue 18): shapes on posts and comments whose where
// clauses read other tables through subqueries (IN, NOT IN, composite, nested, under OR and NOT,
// with plain conditions and $1 params), followed by @sluice/client and by TanStack DB collections
// while seeded random bursts of transactions change all three tables. After every burst each
// follower must equal `SELECT … WHERE <clause>` in Postgres. Replay a failure with the seed its
// message prints: SUBQUERY_SEED=<seed>.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Row } from '@electric-sql/client';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import pg from 'pg';
import {
  assertMatchesPostgres,
  postgresRows,
  unrefClientSaveTimers,
  withSluice,
} from '../support/shape-oracle.js';
import { SluiceFollower } from '../support/sluice-follower.js';
import { tableCollection, type TableCollectionHandle } from '../support/tanstack-table.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const BURSTS = 6;
const TRANSACTIONS_PER_BURST = 10;

// users.id and posts.id are never NULL, so NOT IN over them restarts only when their result
// becomes empty or stops being so; posts.author may be NULL (the outer side of NOT IN, and the
// inner side of the composite NOT IN, which restarts on every change anyway).
const SCHEMA = `
  CREATE TABLE users (id int PRIMARY KEY, active bool NOT NULL, org int NOT NULL);
  CREATE TABLE posts (id int PRIMARY KEY, author int, title text NOT NULL, published bool NOT NULL);
  CREATE TABLE comments (id int PRIMARY KEY, post int NOT NULL, author int NOT NULL, body text NOT NULL);
  INSERT INTO users SELECT i, i % 2 = 0, i % 3 FROM generate_series(1, 12) i;
  INSERT INTO posts SELECT i, CASE WHEN i % 11 = 0 THEN NULL ELSE 1 + i % 12 END,
    (ARRAY['alpha', 'beta', 'xray'])[1 + i % 3] || ' ' || i, i % 3 <> 0 FROM generate_series(1, 40) i;
  INSERT INTO comments SELECT i, 1 + (i * 7) % 40, 1 + (i * 5) % 12,
    (ARRAY['a', 'b', 'c'])[1 + i % 3] || ' comment ' || i FROM generate_series(1, 80) i;`;

const COLUMNS: Record<string, readonly string[]> = {
  users: ['id', 'active', 'org'],
  posts: ['id', 'author', 'title', 'published'],
  comments: ['id', 'post', 'author', 'body'],
};

interface SubqueryShape {
  table: 'posts' | 'comments';
  where: string;
  params?: string[];
}

const SHAPES: SubqueryShape[] = [
  { table: 'posts', where: 'author IN (SELECT id FROM users WHERE active)' },
  { table: 'posts', where: 'author NOT IN (SELECT id FROM users WHERE org = 1)' },
  {
    table: 'posts',
    where: `(author, published) IN (SELECT id, active FROM users WHERE org <> 2)`,
  },
  {
    table: 'posts',
    where: `(published OR title LIKE 'x%') AND author IN (SELECT id FROM users WHERE active AND org <> $1)`,
    params: ['0'],
  },
  {
    table: 'comments',
    where: 'post IN (SELECT id FROM posts WHERE author IN (SELECT id FROM users WHERE active))',
  },
  { table: 'comments', where: 'author = 3 OR post IN (SELECT id FROM posts WHERE published)' },
  {
    table: 'comments',
    where: `author IN (SELECT id FROM users WHERE org = $1) AND NOT (post IN (SELECT id FROM posts WHERE published AND title LIKE 'b%'))`,
    params: ['2'],
  },
  {
    table: 'comments',
    where: '(post, author) NOT IN (SELECT id, author FROM posts WHERE published)',
  },
];

/** The clause with its params written in, for the oracle's SELECT (they are integers here). */
const oracleWhere = (shape: SubqueryShape): string =>
  (shape.params ?? []).reduce(
    (where, value, i) => where.replaceAll(`$${i + 1}`, value),
    shape.where,
  );

/** mulberry32: a small seeded PRNG, so a failing run can be replayed exactly. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Statement = [sql: string, values: unknown[]];

/** Random statements over the three tables; ids grow past the seeded ones for inserts. */
class Workload {
  readonly #random: () => number;
  #next = { users: 13, posts: 41, comments: 81 };

  constructor(seed: number) {
    this.#random = prng(seed);
  }

  #int(below: number): number {
    return Math.floor(this.#random() * below);
  }

  #pick<T>(items: readonly T[]): T {
    return items[this.#int(items.length)]!;
  }

  #user = () => 1 + this.#int(this.#next.users + 2); // sometimes a user that does not exist
  #post = () => 1 + this.#int(this.#next.posts + 2);
  #comment = () => 1 + this.#int(this.#next.comments);
  #author = () => (this.#int(10) === 0 ? null : this.#user());

  statement(table: 'users' | 'posts' | 'comments'): Statement {
    const kind = this.#int(10); // 0-2 insert, 3-8 update, 9 delete
    if (table === 'users') {
      if (kind <= 1)
        return [
          'INSERT INTO users VALUES ($1, $2, $3)',
          [this.#next.users++, this.#int(2) === 0, this.#int(3)],
        ];
      if (kind <= 5) return ['UPDATE users SET active = NOT active WHERE id = $1', [this.#user()]];
      if (kind <= 8)
        return ['UPDATE users SET org = $2 WHERE id = $1', [this.#user(), this.#int(3)]];
      return ['DELETE FROM users WHERE id = $1', [this.#user()]];
    }
    if (table === 'posts') {
      const title = () => `${this.#pick(['alpha', 'beta', 'xray'])} ${this.#int(100)}`;
      if (kind <= 2) {
        return [
          'INSERT INTO posts VALUES ($1, $2, $3, $4)',
          [this.#next.posts++, this.#author(), title(), this.#int(2) === 0],
        ];
      }
      if (kind <= 4)
        return ['UPDATE posts SET author = $2 WHERE id = $1', [this.#post(), this.#author()]];
      if (kind <= 6)
        return ['UPDATE posts SET published = NOT published WHERE id = $1', [this.#post()]];
      if (kind <= 8) return ['UPDATE posts SET title = $2 WHERE id = $1', [this.#post(), title()]];
      return ['DELETE FROM posts WHERE id = $1', [this.#post()]];
    }
    const body = () => `${this.#pick(['a', 'b', 'c'])} comment ${this.#int(1000)}`;
    if (kind <= 2) {
      return [
        'INSERT INTO comments VALUES ($1, $2, $3, $4)',
        [this.#next.comments++, this.#post(), this.#user(), body()],
      ];
    }
    if (kind <= 4)
      return ['UPDATE comments SET post = $2 WHERE id = $1', [this.#comment(), this.#post()]];
    if (kind <= 6)
      return ['UPDATE comments SET author = $2 WHERE id = $1', [this.#comment(), this.#user()]];
    if (kind <= 8)
      return ['UPDATE comments SET body = $2 WHERE id = $1', [this.#comment(), body()]];
    return ['DELETE FROM comments WHERE id = $1', [this.#comment()]];
  }

  /** 2-5 statements; about a third touch an inner table and an outer one together. */
  transaction(): Statement[] {
    const count = 2 + this.#int(4);
    const mixed = this.#int(3) === 0;
    const tables = ['users', 'posts', 'comments'] as const;
    return Array.from({ length: count }, (_, i) =>
      this.statement(mixed ? tables[i % 3]! : this.#pick(tables)),
    );
  }
}

async function runTransaction(url: string, statements: readonly Statement[]): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('BEGIN');
    for (const [sql, values] of statements) await client.query(sql, values);
    await client.query('COMMIT');
  } finally {
    await client.end();
  }
}

interface Follower {
  name: string;
  shape: SubqueryShape;
  rows: () => readonly Row[];
  errors: () => unknown[];
}

test('a row moved from a value moving in to one already in, in the same transaction', async () => {
  const sql = `
    CREATE TABLE users (id int PRIMARY KEY, org int NOT NULL);
    CREATE TABLE comments (id int PRIMARY KEY, author int NOT NULL, body text NOT NULL);
    INSERT INTO users VALUES (1, 1), (5, 2);
    INSERT INTO comments VALUES (24, 1, 'a'), (25, 5, 'b');`;
  await withSluice(postgres, sql, async ({ db, url }) => {
    const where = 'author IN (SELECT id FROM users WHERE org = 2)';
    const follower = new SluiceFollower(url, { params: { table: 'comments', where } });
    const rows = () => follower.rows as unknown as readonly Row[];
    try {
      await assertMatchesPostgres(db, { table: 'comments', where }, rows);
      // One transaction: user 1 moves in, and comment 24 moves from user 1 to user 5.
      await db.query(
        'BEGIN; UPDATE users SET org = 2 WHERE id = 1; UPDATE comments SET author = 5 WHERE id = 24; COMMIT',
      );
      await assertMatchesPostgres(db, { table: 'comments', where }, rows, 5_000);
      // Delivered by the stream, not by starting over.
      assert.equal(follower.mustRefetches + follower.fallbackRefreshes, 0);
    } finally {
      follower.close();
    }
  });
});

test('subquery shapes equal Postgres after random bursts of transactions', async () => {
  const seed = Number(process.env.SUBQUERY_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const workload = new Workload(seed);
  await withSluice(postgres, SCHEMA, async ({ db, url }) => {
    const sluiceFollowers: SluiceFollower[] = [];
    const collections: TableCollectionHandle[] = [];
    const followers: Follower[] = [];
    try {
      for (const shape of SHAPES) {
        const params = { table: shape.table, where: shape.where, params: shape.params };
        const follower = new SluiceFollower(url, { params });
        sluiceFollowers.push(follower);
        followers.push({
          name: `@sluice/client ${shape.table} WHERE ${shape.where}`,
          shape,
          rows: () => follower.rows,
          errors: () => follower.errors,
        });
        const handle = tableCollection(url, { ...shape, columns: COLUMNS[shape.table]! }, 'eager');
        collections.push(handle);
        followers.push({
          name: `TanStack DB ${shape.table} WHERE ${shape.where}`,
          shape,
          rows: handle.rows,
          errors: () => handle.streamErrors,
        });
      }
      const check = async (when: string) => {
        for (const follower of followers) {
          try {
            await assertMatchesPostgres(
              db,
              { table: follower.shape.table, where: oracleWhere(follower.shape) },
              follower.rows,
            );
            assert.deepEqual(follower.errors(), [], 'stream errors');
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error);
            throw new Error(
              `SUBQUERY_SEED=${seed} ${when}, ${follower.name} (params ${JSON.stringify(follower.shape.params ?? [])}): ${message}`,
              { cause: error },
            );
          }
        }
      };
      // What each shape held in Postgres after each check: the workload must really move rows in
      // and out of every shape, or the oracle proves little.
      const seen = SHAPES.map(() => new Set<string>());
      const record = async () => {
        for (const [i, shape] of SHAPES.entries()) {
          const rows = await postgresRows(db, { table: shape.table, where: oracleWhere(shape) });
          seen[i]!.add(JSON.stringify(rows.map((row) => row.id)));
        }
      };
      await check('after the initial snapshot');
      await record();
      for (let burst = 1; burst <= BURSTS; burst++) {
        const transactions: Statement[][] = [];
        for (let i = 0; i < TRANSACTIONS_PER_BURST; i++) {
          const statements = workload.transaction();
          transactions.push(statements);
          await runTransaction(db.url, statements);
        }
        await check(
          `after burst ${burst} (${transactions.map((t) => t.map(([sql, v]) => `${sql} ${JSON.stringify(v)}`).join('; ')).join(' | ')})`,
        );
        await record();
      }
      for (const [i, shape] of SHAPES.entries()) {
        const results = [...seen[i]!];
        assert.ok(
          // At least three different row sets, two of them not empty (a shape may empty out).
          results.length >= 3 && results.filter((rows) => rows !== '[]').length >= 2,
          `SUBQUERY_SEED=${seed}: the workload hardly changed ${shape.table} WHERE ${shape.where}: ${results.join(' ')}`,
        );
      }
    } finally {
      for (const follower of sluiceFollowers) follower.close();
      for (const handle of collections) await handle.collection.cleanup();
    }
  });
});
