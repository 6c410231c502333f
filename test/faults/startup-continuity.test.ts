import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

/**
 * Shape logs left by a previous run continue the stream only if the slot survived. Until the
 * restarted server has checked that, it must not answer from them as if they were current.
 */
test('stored shapes wait for replication to be checked after a restart', async () => {
  const db = await pg.createDatabase();
  await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
  await db.query('INSERT INTO items VALUES (1, 1)');
  const first = await startSluice(db);
  await waitUntilLive(first.baseUrl);
  const initial = await fetch(`${first.baseUrl}/v1/shape?table=items&offset=-1`);
  const handle = initial.headers.get('electric-handle');
  const offset = initial.headers.get('electric-offset');
  assert.equal(initial.status, 200);
  await first.close({ keepStorage: true });

  await pg.crash();
  const second = await startSluice(db, { storageDir: first.storageDir });
  try {
    const url = `${second.baseUrl}/v1/shape?table=items&handle=${handle}&offset=${offset}`;
    const waiting = await fetch(url);
    assert.equal(waiting.status, 503);
    assert.ok(waiting.headers.get('retry-after'));
    assert.equal(((await waiting.json()) as { code: string }).code, 'SLUICE_ERR_NOT_READY');

    await pg.start();
    await waitUntilLive(second.baseUrl);
    await db.query('INSERT INTO items VALUES (2, 2)');
    // The slot survived: the old handle continues, with the row written meanwhile.
    const live = await fetch(`${url}&live=true`);
    assert.equal(live.status, 200);
    assert.equal(live.headers.get('electric-handle'), handle);
    const body = (await live.json()) as { key?: string }[];
    assert.ok(body.some((m) => m.key === '"public"."items"/"2"'));
  } finally {
    await second.close();
    await db.drop();
  }
});

test('an unreadable stored log costs its clients a refetch, not the server', async () => {
  const db = await pg.createDatabase();
  await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
  await db.query('INSERT INTO items VALUES (1, 1)');
  const first = await startSluice(db);
  await waitUntilLive(first.baseUrl);
  const initial = await fetch(`${first.baseUrl}/v1/shape?table=items&offset=-1`);
  const handle = initial.headers.get('electric-handle') ?? '';
  const offset = initial.headers.get('electric-offset') ?? '';
  await first.close({ keepStorage: true });
  // The snapshot's sealed chunk is listed in the index: without its file the log is corrupt.
  await rm(join(first.storageDir, 'shapes', handle, 'chunk-000001.log'));

  const second = await startSluice(db, { storageDir: first.storageDir });
  try {
    await waitUntilLive(second.baseUrl);
    const stale = await fetch(
      `${second.baseUrl}/v1/shape?table=items&handle=${handle}&offset=${offset}`,
    );
    assert.equal(stale.status, 409);
    const fresh = await fetch(`${second.baseUrl}/v1/shape?table=items&offset=-1`);
    assert.equal(fresh.status, 200);
    assert.notEqual(fresh.headers.get('electric-handle'), handle);
    const rows = ((await fresh.json()) as { key?: string }[]).filter((m) => m.key);
    assert.equal(rows.length, 1);
  } finally {
    await second.close();
    await db.drop();
  }
});
