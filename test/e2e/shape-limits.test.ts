// Bounded shapes (issue 13, items 1 and 5; docs/security.md, "Shapes"): a total and a per-table
// shape limit, idle shapes removed with their logs, one shape for every spelling of a where
// clause, and a cap on shapes being created at once whatever the request.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import pg from 'pg';
import { withoutErrorLogs } from '../support/error-logs.js';
import { withSluice as withSluiceOn, type SluiceFixture } from '../support/shape-oracle.js';
import { startSluice, waitUntilLive, type RunningSluice } from '../support/sluice-server.js';
import { get, type Reply } from './shape-http-helpers.js';

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const TABLES = `
  CREATE TABLE items (id int PRIMARY KEY, n int);
  INSERT INTO items SELECT i, i % 10 FROM generate_series(1, 20) i;
  CREATE TABLE other (id int PRIMARY KEY);
  INSERT INTO other VALUES (1), (2);
  CREATE TABLE third (id int PRIMARY KEY);`;

function withSluice(
  overrides: Parameters<typeof startSluice>[1],
  body: (fixture: SluiceFixture) => Promise<void>,
): Promise<void> {
  return withSluiceOn(postgres, TABLES, withoutErrorLogs(body), overrides);
}

function handleOf(reply: Reply): string {
  assert.equal(reply.status, 200, reply.text);
  return reply.headers.get('electric-handle') ?? assert.fail('no handle');
}

function assertRefused(reply: Reply, code: string, pattern: RegExp): void {
  assert.equal(reply.status, 503, reply.text);
  const body = reply.json() as { code: string; message: string };
  assert.equal(body.code, code);
  assert.match(body.message, pattern);
  assert.match(reply.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
}

const shapeDirs = (sluice: RunningSluice) => readdir(join(sluice.storageDir, 'shapes'));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('shape limits', () => {
  test('a shape beyond the total or per-table limit is a 503; the others are still served', async () => {
    await withSluice({ maxShapes: 3, maxShapesPerTable: 2 }, async ({ url }) => {
      const initial = (table: string, where?: string) =>
        get(url, { table, offset: '-1', ...(where === undefined ? {} : { where }) });
      const first = handleOf(await initial('items', 'id > -1'));
      handleOf(await initial('items', 'id > -2'));
      assertRefused(
        await initial('items', 'id > -3'),
        'SLUICE_ERR_SHAPE_LIMIT',
        /limit of 2 shapes of table "public"\."items" \(SLUICE_MAX_SHAPES_PER_TABLE\)/,
      );
      // Existing shapes of the table, and other tables, are still served.
      assert.equal(handleOf(await initial('items', 'id > -1')), first);
      handleOf(await initial('other'));
      assertRefused(
        await initial('third'),
        'SLUICE_ERR_SHAPE_LIMIT',
        /limit of 3 shapes \(SLUICE_MAX_SHAPES\)/,
      );
      handleOf(await initial('other'));
    });
  });

  test('an idle shape is removed with its log; one held by a live request is kept', async () => {
    const overrides = { shapeIdleTimeoutS: 1, longPollTimeoutMs: 4_000 };
    await withSluice(overrides, async ({ sluice, url }) => {
      const idle = await get(url, { table: 'items', offset: '-1' });
      const idleHandle = handleOf(idle);
      const idleOffset = idle.headers.get('electric-offset')!;

      const held = await get(url, { table: 'other', offset: '-1' });
      const heldHandle = handleOf(held);
      const caughtUp = await get(url, {
        table: 'other',
        offset: held.headers.get('electric-offset')!,
        handle: heldHandle,
      });
      assert.equal(caughtUp.status, 200, caughtUp.text);
      const live = get(url, {
        table: 'other',
        offset: caughtUp.headers.get('electric-offset')!,
        handle: heldHandle,
        live: 'true',
      });

      // Well past the idle time, while the live request is held.
      await sleep(2_500);
      const dirs = await shapeDirs(sluice);
      assert.ok(!dirs.includes(idleHandle), `the idle shape's log is gone: ${dirs.join(', ')}`);
      assert.ok(dirs.includes(heldHandle), 'the shape a live request holds is kept');

      // Its client starts again from a new shape, as for any deleted shape.
      const refetch = await get(url, { table: 'items', offset: idleOffset, handle: idleHandle });
      assert.equal(refetch.status, 409, refetch.text);
      const newHandle = refetch.headers.get('electric-handle');
      assert.ok(newHandle && newHandle !== idleHandle, `a new handle, got ${newHandle}`);

      const liveReply = await live;
      assert.equal(liveReply.status, 200, liveReply.text);
      assert.equal(liveReply.headers.get('electric-handle'), heldHandle);
    });
  });

  test('spellings of one where clause share a shape; other constants and params do not', async () => {
    await withSluice({}, async ({ url }) => {
      const handle = async (where: string, params: string[] = []) => {
        const query: Record<string, string> = { table: 'items', offset: '-1', where };
        params.forEach((value, i) => (query[`params[${i + 1}]`] = value));
        return handleOf(await get(url, query));
      };
      const one = await handle('id>1');
      for (const spelling of ['id > 1', '(id>1)', 'ID > 1', ' ( ( id ) >  1 ) ', '"id" > 1']) {
        assert.equal(await handle(spelling), one, spelling);
      }
      assert.equal(await handle('n = 1 AND id > 1'), await handle('n=1 and (id>1)'));

      const others = [
        one,
        await handle('id > 2'),
        await handle('id >= 1'),
        await handle('id > $1', ['1']),
        await handle('id > $1', ['2']),
        await handle('n > 1'),
      ];
      assert.equal(new Set(others).size, others.length, others.join(', '));
      assert.equal(await handle(' id > $1', ['2']), others[4]);
    });
  });

  test('a stored shape is found under its canonical key after a restart', async () => {
    // Keys are computed from the stored definition, never stored: shapes written before
    // clauses were keyed canonically are found the same way.
    await withSluice({}, async ({ db, sluice }) => {
      const url = `${sluice.baseUrl}/v1/shape`;
      const stored = handleOf(await get(url, { table: 'items', offset: '-1', where: 'id>1' }));
      await sluice.close({ keepStorage: true });
      const again = await startSluice(db, { storageDir: sluice.storageDir });
      try {
        await waitUntilLive(again.baseUrl);
        const reply = await get(`${again.baseUrl}/v1/shape`, {
          table: 'items',
          offset: '-1',
          where: '( ID > 1 )',
        });
        assert.equal(handleOf(reply), stored);
      } finally {
        await again.close();
      }
    });
  });

  test('shapes being created at once are capped whatever the request', async () => {
    await withSluice({ maxConcurrentInitial: 5 }, async ({ db, sluice, url }) => {
      // The table is published beforehand: each creation below then waits on the lock.
      handleOf(await get(url, { table: 'items', offset: '-1' }));
      const before = (await shapeDirs(sluice)).length;

      const locker = new pg.Client({ connectionString: db.url });
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE items IN ACCESS EXCLUSIVE MODE');
      const requests = Array.from({ length: 110 }, (_, i) =>
        get(url, { table: 'items', offset: '0_0', handle: 'bogus', where: `id > -${i + 1}` }),
      );
      let replies: Reply[];
      try {
        // Those refused answer at once; the admitted ones wait on the lock.
        await sleep(1_500);
      } finally {
        await locker.query('ROLLBACK');
        await locker.end();
        replies = await Promise.all(requests);
      }
      const refused = replies.filter((reply) => reply.status === 503);
      for (const reply of refused) {
        assertRefused(reply, 'SLUICE_ERR_OVERLOADED', /shapes being created at once \(limit 5\)/);
      }
      const made = replies.filter((reply) => reply.status === 409);
      assert.equal(made.length + refused.length, replies.length);
      assert.ok(made.length >= 1 && made.length <= 5, `${made.length} shapes made`);
      assert.ok((await shapeDirs(sluice)).length - before <= 5);
    });
  });
});
