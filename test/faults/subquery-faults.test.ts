// Subquery shapes through faults (issue 18): a kill -9 of the server, a terminated walsender and a
// replication outage long enough for fallback mode. The slot survives every one of them, so the
// followers keep their handles: no 409, no must-refetch. Every scenario ends with the oracle
// (each follower's rows equal `SELECT … WHERE <clause>` in Postgres).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort } from '@sluice/local-postgres';
import {
  startPostgres,
  terminateWalsender,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import { CountingFollower } from '../support/counting-follower.js';
import { assertFallbackSnapshot, waitForStatus } from '../support/fallback-checks.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { assertMatchesPostgres, unrefClientSaveTimers } from '../support/shape-oracle.js';
import { SluiceFollower } from '../support/sluice-follower.js';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';

unrefClientSaveTimers();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const SCHEMA = `
  CREATE TABLE orgs (id int PRIMARY KEY, active boolean NOT NULL);
  CREATE TABLE users (id int PRIMARY KEY, active boolean NOT NULL, org int);
  CREATE TABLE posts (id int PRIMARY KEY, author int, title text);
  INSERT INTO orgs SELECT i, i <> 1 FROM generate_series(0, 2) i;
  INSERT INTO users SELECT i, i % 2 = 0, i % 3 FROM generate_series(1, 10) i;
  INSERT INTO posts SELECT i, 1 + i % 10, 'post ' || i FROM generate_series(1, 40) i;`;

/** A subquery over users, and one nested two deep (users, then orgs). */
const ACTIVE_AUTHORS = 'author IN (SELECT id FROM users WHERE active)';
const NESTED =
  'author IN (SELECT id FROM users WHERE org IN (SELECT id FROM orgs WHERE active) AND id > 2)';
const CLAUSES = [ACTIVE_AUTHORS, NESTED];

/** A small deterministic PRNG, so a failing run can be repeated. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1_664_525 + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

/**
 * Keeps writing until stopped, each write its own transaction: toggles of users.active (rows of
 * that author move in or out), users moving between orgs, orgs toggled, new posts, posts changing
 * author (moving in and out on their own), and transactions writing both tables. A write that
 * fails while the database is unreachable is skipped; the oracle reads whatever committed.
 */
class BlogWriter {
  committed = 0;
  nextPost = 1_000;
  #stopped = false;
  readonly done: Promise<void>;

  constructor(
    private readonly db: TestDatabase,
    seed: number,
    options: { innerOnly?: boolean } = {},
  ) {
    this.done = this.#run(random(seed), options.innerOnly ?? false);
  }

  async #run(next: () => number, innerOnly: boolean): Promise<void> {
    const user = () => 1 + Math.floor(next() * 10);
    while (!this.#stopped) {
      const pick = next();
      const id = this.nextPost;
      try {
        if (pick < 0.35) {
          await this.db.query('UPDATE users SET active = NOT active WHERE id = $1', [user()]);
        } else if (pick < 0.45) {
          await this.db.query('UPDATE users SET org = (org + 1) % 3 WHERE id = $1', [user()]);
        } else if (pick < 0.5) {
          await this.db.query('UPDATE orgs SET active = NOT active WHERE id = $1', [
            Math.floor(next() * 3),
          ]);
        } else if (innerOnly) {
          continue;
        } else if (pick < 0.7) {
          this.nextPost++;
          await this.db.query(`INSERT INTO posts VALUES ($1, $2, 'w')`, [id, user()]);
        } else if (pick < 0.9) {
          const post = 1 + Math.floor(next() * 40);
          await this.db.query('UPDATE posts SET author = $2 WHERE id = $1', [post, user()]);
        } else {
          // Both tables in one transaction: the post is judged by the new results.
          this.nextPost++;
          const author = user();
          await this.db.query(
            `BEGIN;
             UPDATE users SET active = NOT active WHERE id = ${author};
             INSERT INTO posts VALUES (${id}, ${author}, 'both');
             COMMIT`,
          );
        }
        this.committed++;
      } catch {
        await sleep(50);
      }
      await sleep(5);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.done;
  }
}

/** One @sluice/client follower per clause, and the official client on the first clause. */
class Followers {
  readonly sluice: SluiceFollower[];
  /**
   * The official client does not apply move-in/move-out events (its rows are not the shape's),
   * but it follows the same handle: it must not be sent to refetch or fail either.
   */
  readonly official: CountingFollower;

  constructor(baseUrl: string) {
    const url = `${baseUrl}/v1/shape`;
    this.sluice = CLAUSES.map(
      (where) => new SluiceFollower(url, { params: { table: 'posts', where } }),
    );
    this.official = new CountingFollower(url, { table: 'posts', where: ACTIVE_AUTHORS });
  }

  /** THE ORACLE for every clause, then the no-refetch checks. */
  async assertMatchPostgres(db: TestDatabase, timeoutMs = 30_000): Promise<void> {
    for (const [i, follower] of this.sluice.entries()) {
      const where = CLAUSES[i]!;
      // Both clients parse values alike: @sluice/client's rows are the oracle's Row.
      await assertMatchesPostgres(
        db,
        { table: 'posts', where },
        () => follower.rows,
        timeoutMs,
      ).catch((error: unknown) => {
        throw new Error(`${where}: ${(error as Error).message}`, { cause: error });
      });
    }
    this.assertNoRefetch();
  }

  // No ChangeAudit here: a move-out event removes rows without a delete and a move-in may insert
  // a row the client holds, so its exactly-once rules do not hold; the oracle checks the rows.
  assertNoRefetch(): void {
    for (const [i, follower] of this.sluice.entries()) {
      assert.equal(follower.mustRefetches, 0, `${CLAUSES[i]}: no 409 / must-refetch`);
      assert.deepEqual(follower.errors, [], `${CLAUSES[i]}: no client error`);
    }
    assert.equal(this.official.mustRefetches, 0, 'official client: no 409 / must-refetch');
  }

  /** Handles the followers hold (one per shape, unchanged by a fault that kept the slot). */
  handles(): (string | undefined)[] {
    return [...this.sluice.map((f) => f.stream.shapeHandle), this.official.stream.shapeHandle];
  }

  close(): void {
    for (const follower of this.sluice) follower.close();
    this.official.close();
  }
}

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

async function blogDatabase(): Promise<TestDatabase> {
  const db = await pg.createDatabase();
  await db.query(SCHEMA);
  return db;
}

/** The server as a child process (so it can be killed with SIGKILL) on a fixed port and storage. */
async function killableServer(db: TestDatabase) {
  const storageDir = await mkdtemp(join(tmpdir(), 'sluice-subquery-kill-'));
  const env = {
    DATABASE_URL: db.url,
    SLUICE_PORT: String(await freePort()),
    SLUICE_STORAGE_DIR: storageDir,
    SLUICE_SLOT_NAME: db.slotName,
    SLUICE_PUBLICATION_NAME: db.publicationName,
    SLUICE_LONG_POLL_TIMEOUT_MS: '2000',
    SLUICE_REPLICATION_RETRY_MIN_MS: '100',
    SLUICE_LOG_LEVEL: process.env.SLUICE_TEST_LOG_LEVEL ?? 'warn',
  };
  let server: ServerProcess = await startServerProcess(env);
  await waitUntilLive(server.baseUrl);
  return {
    get baseUrl() {
      return server.baseUrl;
    },
    async kill() {
      await server.stop('SIGKILL');
    },
    async restart() {
      server = await startServerProcess(env);
      await waitUntilLive(server.baseUrl);
    },
    async close() {
      await server.stop('SIGKILL');
      await rm(storageDir, { recursive: true, force: true });
    },
  };
}

describe('subquery shapes through faults keep their handles', () => {
  test('kill -9 while both tables change, restart on the same storage and port', async () => {
    const db = await blogDatabase();
    const server = await killableServer(db);
    const followers = new Followers(server.baseUrl);
    const writer = new BlogWriter(db, 1);
    try {
      await followers.assertMatchPostgres(db);
      const handles = followers.handles();
      for (let round = 0; round < 2; round++) {
        await sleep(1_500);
        await server.kill();
        await sleep(1_000); // writes, moves in and out included, go on while Sluice is down
        await server.restart();
      }
      await sleep(1_500);
      await writer.stop();
      assert.ok(writer.committed > 50, `the workload ran (${writer.committed} commits)`);
      // New followers first: they read the shapes' logs from the start, so a failure here is in
      // what the server stored, one only below in what the followers were served on the way.
      const fresh = new Followers(server.baseUrl);
      try {
        await fresh.assertMatchPostgres(db);
        assert.deepEqual(fresh.handles(), followers.handles(), 'the same shapes');
      } finally {
        fresh.close();
      }
      await followers.assertMatchPostgres(db);
      assert.deepEqual(followers.handles(), handles, 'the same shapes after the restarts');
      assert.deepEqual(followers.official.errors, [], 'official client: no error');
    } finally {
      followers.close();
      await writer.stop();
      await server.close();
      await db.drop();
    }
  });

  test('walsender terminated during inner-table writes', async () => {
    const db = await blogDatabase();
    const sluice = await startSluice(db, { longPollTimeoutMs: 1_000 });
    const followers = new Followers(sluice.baseUrl);
    const writer = new BlogWriter(db, 2, { innerOnly: true });
    try {
      await followers.assertMatchPostgres(db);
      const handles = followers.handles();
      for (let i = 0; i < 3; i++) {
        await sleep(700);
        await waitUntilLive(sluice.baseUrl);
        assert.ok((await terminateWalsender(db, db.slotName)) > 0, 'a walsender was terminated');
      }
      await waitUntilLive(sluice.baseUrl);
      await sleep(700);
      await writer.stop();
      assert.ok(writer.committed > 20, `the workload ran (${writer.committed} commits)`);
      await followers.assertMatchPostgres(db);
      assert.deepEqual(followers.handles(), handles, 'the same shapes after the reconnects');
    } finally {
      followers.close();
      await writer.stop();
      await sluice.close();
      await db.drop();
    }
  });

  /**
   * Followers live, then a replication outage (the walsender terminated, a long reconnect delay)
   * during which both tables change and the fallback answers are checked, then live again and
   * more changes. The followers go through fallback (they replace their rows with fallback
   * answers) and resume their live shapes from where they were.
   */
  async function throughFallback(
    body: (db: TestDatabase, baseUrl: string, followers: Followers) => Promise<void>,
  ): Promise<void> {
    const db = await blogDatabase();
    // A long reconnect delay keeps the outage open long enough to look at it.
    const sluice = await startSluice(db, {
      longPollTimeoutMs: 1_000,
      replicationRetryMinMs: 5_000,
      replicationRetryMaxMs: 5_000,
    });
    const followers = new Followers(sluice.baseUrl);
    try {
      await followers.assertMatchPostgres(db);
      const handles = followers.handles();
      await terminateWalsender(db, db.slotName);
      await waitForStatus(sluice.baseUrl, 'fallback', 2_000);
      // Changes during the outage, moves of both kinds and a nested one among them: the
      // fallback answer is Postgres now, with the subqueries evaluated there.
      await db.query('UPDATE users SET active = NOT active WHERE id IN (2, 3)');
      await db.query('UPDATE orgs SET active = true WHERE id = 1');
      await db.query(`INSERT INTO posts VALUES (500, 3, 'outage'), (501, 2, 'outage')`);
      await db.query('UPDATE posts SET author = 4 WHERE id = 1');
      for (const where of CLAUSES) {
        const handle = await assertFallbackSnapshot(
          db,
          sluice.baseUrl,
          { table: 'posts', where },
          { table: 'posts', where },
        );
        assert.match(handle, /-fallback-/);
      }
      await waitForStatus(sluice.baseUrl, 'live', 20_000);
      // And changes after the return, through the live shapes the followers kept.
      await db.query('UPDATE users SET active = NOT active WHERE id IN (3, 4, 6)');
      await db.query('UPDATE orgs SET active = false WHERE id = 2');
      await db.query(`INSERT INTO posts VALUES (502, 6, 'after'), (503, 8, 'after')`);
      for (const follower of followers.sluice) {
        assert.ok(follower.fallbackRefreshes > 0, 'the follower was answered in fallback');
      }
      await body(db, sluice.baseUrl, followers);
      followers.assertNoRefetch();
      assert.deepEqual(followers.handles(), handles, 'back on the shapes followed before');
    } finally {
      followers.close();
      await sluice.close();
      await db.drop();
    }
  }

  test('fallback answers with the whole clause; after it the live shapes are right, no refetch', async () => {
    await throughFallback(async (db, baseUrl, followers) => {
      // The server's side: its live shapes (kept through the outage, same handles) followed
      // every change, as a new follower of each, reading it from its log, shows.
      const fresh = new Followers(baseUrl);
      try {
        await fresh.assertMatchPostgres(db);
        assert.deepEqual(fresh.handles(), followers.handles(), 'the same live shapes');
      } finally {
        fresh.close();
      }
    });
  });

  test('followers that went through fallback converge after it without refetch', async () => {
    await throughFallback(async (db, _baseUrl, followers) => {
      await followers.assertMatchPostgres(db);
    });
  });

  test('kill -9 after the results changed several times: the newest stored results are used', async () => {
    const db = await blogDatabase();
    const server = await killableServer(db);
    const followers = new Followers(server.baseUrl);
    try {
      await followers.assertMatchPostgres(db);
      const handles = followers.handles();
      // User 2 moves out and back in, twice, each change seen by the followers; then out, in
      // and out with no wait, and the server is killed right after the last commit.
      for (let i = 0; i < 2; i++) {
        await db.query('UPDATE users SET active = false WHERE id = 2');
        await followers.assertMatchPostgres(db);
        await db.query('UPDATE users SET active = true WHERE id = 2');
        await followers.assertMatchPostgres(db);
      }
      await db.query('UPDATE orgs SET active = false WHERE id = 2');
      await followers.assertMatchPostgres(db);
      await db.query('UPDATE orgs SET active = true WHERE id = 2');
      await followers.assertMatchPostgres(db);
      await db.query('UPDATE users SET active = false WHERE id = 4');
      await db.query('UPDATE users SET active = true WHERE id = 4');
      await followers.assertMatchPostgres(db);
      await server.kill();
      await server.restart();
      await followers.assertMatchPostgres(db);
      // With stale results stored, these moves would be diffed against the wrong set: user 2
      // and user 4 (in the newest results) move out, org 2 (active there) is switched off.
      await db.query('UPDATE users SET active = false WHERE id IN (2, 4)');
      await db.query('UPDATE users SET active = true WHERE id = 5');
      await db.query('UPDATE orgs SET active = false WHERE id = 2');
      await followers.assertMatchPostgres(db);
      // Then a kill while a result change has been committed but maybe not yet flushed.
      await db.query('UPDATE users SET active = true WHERE id = 2');
      await server.kill();
      await db.query('UPDATE users SET active = false WHERE id = 5');
      await server.restart();
      await db.query('UPDATE orgs SET active = true WHERE id = 2');
      await followers.assertMatchPostgres(db);
      assert.deepEqual(followers.handles(), handles, 'the same shapes after the restarts');
    } finally {
      followers.close();
      await server.close();
      await db.drop();
    }
  });
});
