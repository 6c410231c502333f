// @sluice/client over long-polls, through a proxy that cuts HTTP answers in the middle of their
// body (a part arrives, then the connection is reset), while a writer commits: the client asks
// for the same answer again, as for any network failure, and keeps following. It ends equal to
// SELECT, every change exactly once, with no error and no refetch. (The official client ends its
// stream on such a cut, which is why ws-faults.test.ts does not cut long-poll answers.)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PATHS } from '@sluice/protocol';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import { startCuttingProxy } from '../support/cutting-proxy.js';
import { assertMatchesPostgres } from '../support/shape-oracle.js';
import { SluiceFollower } from '../support/sluice-follower.js';
import { startSluice } from '../support/sluice-server.js';

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('a long-poll answer cut mid-body is asked for again: nothing lost, nothing twice', async (t) => {
  const db = await pg.createDatabase();
  await db.query(`CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL);
    INSERT INTO items SELECT g, 'seed' FROM generate_series(1, 100) g;`);
  const sluice = await startSluice(db, { longPollTimeoutMs: 1_000 });
  const proxy = await startCuttingProxy(sluice.baseUrl);
  const follower = new SluiceFollower(`${proxy.baseUrl}${PATHS.shape}`, {
    params: { table: 'items' },
    liveTransport: 'long-poll',
  });
  let writing = true;
  let nextId = 1_000;
  // Batches of 50 rows of ~300 bytes: every live answer is well over the cut's 4 kB.
  const writer = (async () => {
    while (writing) {
      await db.query(
        `WITH added AS (INSERT INTO items SELECT g, repeat(md5(g::text), 10)
                          FROM generate_series($1::int, $1::int + 49) g)
         UPDATE items SET note = note || '!' WHERE id = $1::int - 50`,
        [nextId],
      );
      nextId += 50;
      await sleep(50);
    }
  })();
  try {
    // A client that stopped at a cut asks for nothing more: the next cut would never come.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      proxy.cutMidChunk({ kind: 'http', minBytes: 4_096, count: 5 }),
      new Promise((_, reject) => {
        timer = setTimeout(() => {
          reject(
            new Error(`5 cuts not within 60 s; errors: ${follower.errors.map(String).join('; ')}`),
          );
        }, 60_000);
      }),
    ]).finally(() => clearTimeout(timer));
    await sleep(500);
    writing = false;
    await writer;
    t.diagnostic(`cuts ${JSON.stringify(proxy.cuts)}; ${(nextId - 1_000) / 50} batches`);
    await assertMatchesPostgres(db, { table: 'items' }, () => follower.rows, 60_000);
    assert.deepEqual(follower.errors, [], 'no client error');
    assert.equal(follower.mustRefetches, 0, 'no refetch');
    assert.deepEqual(follower.audit.anomalies, [], 'every change exactly once');
    assert.equal(proxy.cuts.http, 5);
  } finally {
    writing = false;
    await writer.catch(() => undefined);
    follower.close();
    await proxy.close();
    await sluice.close();
    await db.drop();
  }
});
