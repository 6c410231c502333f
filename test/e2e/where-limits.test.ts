// Costly and malformed where clauses and names (docs/security.md, "Where clauses"; issue 13):
// limits on a clause's length, nodes and depth answered as 400s naming the limit, NUL characters
// refused wherever a request carries text to Postgres, a statement timeout of its own for the
// snapshot of a filtered shape, and fewer shapes created at once than the pool has connections.
// Nothing here may be logged at error level.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import { withoutErrorLogs } from '../support/error-logs.js';
import { withSluice as withSluiceOn, type SluiceFixture } from '../support/shape-oracle.js';
import type { startSluice } from '../support/sluice-server.js';
import { get, type Reply } from './shape-http-helpers.js';
import { lockTable } from '../support/table-lock.js';

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const TABLES = `
  CREATE TABLE items (id int PRIMARY KEY, t text, n int);
  INSERT INTO items SELECT i, 'x', i % 10 FROM generate_series(1, 100) i;
  CREATE TABLE other (id int PRIMARY KEY);
  INSERT INTO other VALUES (1), (2);`;

function withSluice(
  overrides: Parameters<typeof startSluice>[1],
  body: (fixture: SluiceFixture) => Promise<void>,
): Promise<void> {
  return withSluiceOn(postgres, TABLES, withoutErrorLogs(body), overrides);
}

/** The problems a 400 lists under `field`. */
function problems(reply: Reply, field: string): string[] {
  assert.equal(reply.status, 400, reply.text);
  const body = reply.json() as { message: string; errors: Record<string, string[]> };
  assert.equal(body.message, 'Invalid request');
  return body.errors[field] ?? assert.fail(`no ${field} in ${reply.text}`);
}

describe('where clause limits', () => {
  test('deep, long and many-noded clauses are 400s naming the limit', async () => {
    await withSluice({}, async ({ url }) => {
      const initial = (where: string) => get(url, { table: 'items', offset: '-1', where });
      // 650 concatenations kept Postgres busy for 27 s on a snapshot.
      const concat = await initial(`${Array(651).fill('t').join(' || ')} = 'x'`);
      assert.match(
        problems(concat, 'where')[0]!,
        /at most 64 are allowed \(SLUICE_WHERE_MAX_DEPTH\)/,
      );
      // 1,500 NOTs and 2,000 nested additions overflowed the stack: a 500.
      const nots = await initial(`${'NOT '.repeat(1500)}true`);
      assert.match(problems(nots, 'where')[0]!, /SLUICE_WHERE_MAX_DEPTH/);
      const sums = await initial(`id${'+1'.repeat(2000)} = 1`);
      assert.match(problems(sums, 'where')[0]!, /SLUICE_WHERE_MAX_DEPTH/);
      const long = await initial(`t = '${'x'.repeat(9000)}'`);
      assert.match(
        problems(long, 'where')[0]!,
        /^is 9006 characters long; at most 8192 are allowed \(SLUICE_WHERE_MAX_LENGTH\)$/,
      );
      const list = Array.from({ length: 1200 }, (_, i) => i).join(',');
      const wide = await initial(`id IN (${list})`);
      assert.match(
        problems(wide, 'where')[0]!,
        /at most 1000 are allowed \(SLUICE_WHERE_MAX_NODES\)/,
      );
      // The server still serves clauses within the limits.
      const fine = await initial(`id${'+1'.repeat(20)} = 21`);
      assert.equal(fine.status, 200, fine.text);
    });
  });

  test('the limits are the configured ones', async () => {
    const limits = { whereMaxLength: 12, whereMaxDepth: 3, whereMaxNodes: 6 };
    await withSluice(limits, async ({ url }) => {
      const initial = (where: string) => get(url, { table: 'items', offset: '-1', where });
      assert.match(problems(await initial('id = 1 AND n = 2'), 'where')[0]!, /at most 12 .*LENGTH/);
      assert.match(problems(await initial('n = n + 1'), 'where')[0]!, /at most 3 .*DEPTH/);
      assert.match(problems(await initial('n IN (1,2,3)'), 'where')[0]!, /at most 6 .*NODES/);
      const fine = await initial('n = 1');
      assert.equal(fine.status, 200, fine.text);
    });
  });

  test('a NUL character in where, params, table or columns is a 400, never a 500', async () => {
    await withSluice({}, async ({ url }) => {
      const base = { table: 'items', offset: '-1' };
      // libpg_query stopped at the NUL: this was served as `id = 1`.
      const where = await get(url, { ...base, where: 'id = 1\0garbage' });
      assert.deepEqual(problems(where, 'where'), ['must not contain a NUL character (%00)']);
      const params = await get(url, { ...base, where: 't = $1', 'params[1]': 'a\0b' });
      assert.deepEqual(problems(params, 'params'), [
        'params[1] must not contain a NUL character (%00)',
      ]);
      const table = await get(url, { ...base, table: '"a\0b"' });
      assert.match(problems(table, 'table')[0]!, /contains a NUL character \(%00\)/);
      const columns = await get(url, { ...base, columns: 'id,"t\0"' });
      assert.match(problems(columns, 'columns')[0]!, /contains a NUL character \(%00\)/);
    });
  });
});

describe('filtered snapshots', () => {
  test('one slower than its timeout is a 400 under where, leaves no shape, and others go on', async () => {
    const overrides = { filteredSnapshotTimeoutMs: 300, dbStatementTimeoutMs: 20_000 };
    await withSluice(overrides, async ({ db, sluice, url }) => {
      // Published and set up beforehand, so that only the snapshot waits for the lock below.
      const items = await get(url, { table: 'items', offset: '-1' });
      assert.equal(items.status, 200, items.text);
      const other = await get(url, { table: 'other', offset: '-1' });
      assert.equal(other.status, 200, other.text);
      const shapesDir = join(sluice.storageDir, 'shapes');
      const before = await readdir(shapesDir);

      const release = await lockTable(db, 'items');
      try {
        const started = performance.now();
        const slow = get(url, { table: 'items', offset: '-1', where: 'n = 3' });
        // Meanwhile other requests are answered, catalog queries included.
        const again = await get(url, { table: 'other', offset: '-1' });
        assert.equal(again.status, 200, again.text);
        const [problem] = problems(await slow, 'where');
        // Its own timeout ended it, not the connections' statement timeout.
        assert.ok(performance.now() - started < overrides.dbStatementTimeoutMs);
        assert.match(problem!, /took longer than 300 ms \(SLUICE_FILTERED_SNAPSHOT_TIMEOUT_MS\)/);
        assert.deepEqual((await readdir(shapesDir)).sort(), before.sort(), 'no shape left');
      } finally {
        await release();
      }
      // Nothing half-made stands in the way: the same shape is made once the table is free.
      const made = await get(url, { table: 'items', offset: '-1', where: 'n = 3' });
      assert.equal(made.status, 200, made.text);
      assert.equal((made.json() as unknown[]).length, 11, 'ten rows and the end of the snapshot');
    });
  });

  test('shapes being created never take every pooled connection', async () => {
    // 4 connections, at most 2 shape creations at once (the default: the pool minus 2).
    const overrides = { dbPoolSize: 4, dbConnectTimeoutMs: 1_000 };
    await withSluice(overrides, async ({ db, url }) => {
      const other = await get(url, { table: 'other', offset: '-1' });
      assert.equal(other.status, 200, other.text);
      const items = await get(url, { table: 'items', offset: '-1' });
      assert.equal(items.status, 200, items.text);

      const release = await lockTable(db, 'items');
      // Eight new shapes, each waiting for the lock while it holds a connection.
      const creating = Array.from({ length: 8 }, (_, i) =>
        get(url, { table: 'items', offset: '-1', where: `n = ${i}` }),
      );
      const answers: Reply[] = [];
      try {
        await new Promise((resolve) => setTimeout(resolve, 500));
        // An initial request checks its table in the catalog: it still finds a connection.
        for (let i = 0; i < 3; i++) answers.push(await get(url, { table: 'other', offset: '-1' }));
      } finally {
        await release();
      }
      for (const answer of answers) assert.equal(answer.status, 200, answer.text);
      for (const reply of await Promise.all(creating)) assert.equal(reply.status, 200, reply.text);
    });
  });
});
