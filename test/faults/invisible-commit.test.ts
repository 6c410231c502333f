// A commit Postgres has sent through replication but that new snapshots cannot see yet must not
// be lost by a shape created in between. Postgres sends a commit once its WAL is flushed; it
// becomes visible only after that (with a synchronous standby, once the standby confirms). The
// shape created in that window gets nothing from replication (the commit went by before it
// existed), so its snapshot has to wait until it sees the commit. A synchronous standby that never
// answers holds the window open for as long as the test needs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import pg from 'pg';
import { CountingFollower } from '../support/counting-follower.js';
import { assertMatchesPostgres } from '../support/shape-oracle.js';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

test('a shape created while a replicated commit is still invisible still gets it', async () => {
  const db = await postgres.createDatabase();
  await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
  await db.query('INSERT INTO items SELECT g, g FROM generate_series(1, 10) g');
  const sluice = await startSluice(db);
  const url = `${sluice.baseUrl}/v1/shape`;
  const whole = new CountingFollower(url, { table: 'items' });
  let filtered: CountingFollower | undefined;
  const writer = new pg.Client({ connectionString: db.url });
  writer.on('error', () => undefined);
  await writer.connect();
  try {
    await waitUntilLive(sluice.baseUrl);
    await whole.waitFor((rows) => rows.size === 10);

    // Commits now wait for a standby that does not exist: flushed and replicated, not visible.
    await db.query("ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
    await db.query('SELECT pg_reload_conf()');
    // The reload reaches each backend asynchronously: wait until the writer's session has it.
    for (let i = 0; ; i++) {
      const shown = await writer.query<{ synchronous_standby_names: string }>(
        'SHOW synchronous_standby_names',
      );
      if (shown.rows[0]?.synchronous_standby_names === 'nobody') break;
      assert.ok(i < 200, 'the writer never saw the new setting');
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const committing = writer.query('INSERT INTO items VALUES (42, 42)');
    await whole.waitFor((rows) => rows.has('"public"."items"/"42"'));
    const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM items');
    assert.equal(rows[0]?.n, '10', 'the commit is replicated but not visible yet');

    // A new shape on the table, created inside the window.
    filtered = new CountingFollower(url, { table: 'items', where: 'v > 0' });
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await db.query('ALTER SYSTEM RESET synchronous_standby_names');
    await db.query('SELECT pg_reload_conf()');
    await committing;

    const created = filtered;
    await assertMatchesPostgres(db, { table: 'items', where: 'v > 0' }, () => [
      ...created.rows.values(),
    ]);
    assert.ok(created.rows.has('"public"."items"/"42"'), 'the new shape has the row');
    assert.deepEqual(created.errors, []);
    assert.equal(created.mustRefetches, 0);
    await assertMatchesPostgres(db, { table: 'items' }, () => [...whole.rows.values()]);
  } finally {
    await db.query('ALTER SYSTEM RESET synchronous_standby_names').catch(() => undefined);
    await db.query('SELECT pg_reload_conf()').catch(() => undefined);
    whole.close();
    filtered?.close();
    await writer.end().catch(() => undefined);
    await sluice.close();
    await db.drop();
  }
});
