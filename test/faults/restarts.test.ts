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
import { assertMatchesPostgres } from '../support/shape-oracle.js';
import { startServerProcess } from '../support/server-process.js';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';
import { assertMatchesTable, Writer } from '../support/table-oracle.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Restart tests (issue: live sync core). Each runs a writer and an official-client follower
 * through a fault and ends with the oracle plus exactly-once checks: no refetch (409), no
 * duplicate insert, and every committed row present.
 */
describe('restarts keep every change exactly once, without refetching', () => {
  let pg: TestPostgres;
  let db: TestDatabase;

  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    await pg.stop();
  });

  async function freshTable(): Promise<TestDatabase> {
    db = await pg.createDatabase();
    await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
    return db;
  }

  function assertExactlyOnce(follower: CountingFollower, writer: Writer): void {
    assert.equal(follower.mustRefetches, 0, 'no 409 / must-refetch');
    assert.deepEqual(follower.duplicates(), [], 'no insert delivered twice');
    assert.equal(follower.rows.size, writer.committed, 'every committed insert arrived');
  }

  test('kill -9 of the server mid-stream, then a restart on the same storage', async () => {
    const db = await freshTable();
    const storageDir = await mkdtemp(join(tmpdir(), 'sluice-kill-'));
    const port = String(await freePort());
    const env = {
      DATABASE_URL: db.url,
      SLUICE_PORT: port,
      SLUICE_STORAGE_DIR: storageDir,
      SLUICE_SLOT_NAME: db.slotName,
      SLUICE_PUBLICATION_NAME: db.publicationName,
      SLUICE_LONG_POLL_TIMEOUT_MS: '2000',
      SLUICE_REPLICATION_RETRY_MIN_MS: '100',
      SLUICE_LOG_LEVEL: 'warn',
    };
    let server = await startServerProcess(env);
    await waitUntilLive(server.baseUrl);
    const follower = new CountingFollower(`${server.baseUrl}/v1/shape`, { table: 'items' });
    // A filtered shape too: its where clause is stored with it and must work after a restart.
    // Updates move rows out of it (v goes 0 → 1).
    const filtered = new CountingFollower(`${server.baseUrl}/v1/shape`, {
      table: 'items',
      where: 'v = $1 AND id % 2 = 0',
      params: ['0'],
    });
    const writer = new Writer(db);
    try {
      await sleep(1_500);
      await server.stop('SIGKILL');
      await sleep(1_000); // writes continue while Sluice is down
      server = await startServerProcess(env);
      await waitUntilLive(server.baseUrl);
      await sleep(1_500);
      await server.stop('SIGKILL');
      server = await startServerProcess(env);
      await sleep(1_000);
      await writer.stop();
      await assertMatchesTable(db, follower);
      assertExactlyOnce(follower, writer);
      assert.ok(writer.committed > 50, `the workload ran (${writer.committed} commits)`);
      const spec = { table: 'items', where: 'v = 0 AND id % 2 = 0' };
      await assertMatchesPostgres(db, spec, () => [...filtered.rows.values()]);
      assert.equal(filtered.mustRefetches, 0, 'the filtered shape survived the restarts');
      assert.deepEqual(filtered.duplicates(), [], 'no insert delivered twice');
    } finally {
      filtered.close();
      follower.close();
      await writer.stop();
      await server.stop('SIGKILL');
      await rm(storageDir, { recursive: true, force: true });
      await db.drop();
    }
  });

  for (const mode of ['fast', 'immediate'] as const) {
    test(`Postgres restart (${mode}) while clients follow`, async () => {
      const db = await freshTable();
      const sluice = await startSluice(db);
      await waitUntilLive(sluice.baseUrl);
      const follower = new CountingFollower(`${sluice.baseUrl}/v1/shape`, { table: 'items' });
      const writer = new Writer(db);
      try {
        await sleep(1_000);
        await pg.restart({ mode });
        await sleep(1_500);
        await writer.stop();
        await assertMatchesTable(db, follower);
        assertExactlyOnce(follower, writer);
      } finally {
        follower.close();
        await writer.stop();
        await sluice.close();
        await db.drop();
      }
    });
  }

  test('walsender terminated repeatedly', async () => {
    const db = await freshTable();
    const sluice = await startSluice(db);
    await waitUntilLive(sluice.baseUrl);
    const follower = new CountingFollower(`${sluice.baseUrl}/v1/shape`, { table: 'items' });
    const writer = new Writer(db);
    try {
      for (let i = 0; i < 3; i++) {
        await sleep(700);
        await waitUntilLive(sluice.baseUrl);
        await terminateWalsender(db, db.slotName);
      }
      await sleep(700);
      await writer.stop();
      await assertMatchesTable(db, follower);
      assertExactlyOnce(follower, writer);
    } finally {
      follower.close();
      await writer.stop();
      await sluice.close();
      await db.drop();
    }
  });
});
