// Raw HTTP against a real Sluice, no client: offset=now, long-polls held until a change or the
// timeout, offsets past the end, admission control of live requests, shutdown with a held
// long-poll, and the chunk-size bound (docs/protocol.md §3, §5).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import { unrefClientSaveTimers, withSluice } from '../support/shape-oracle.js';
import {
  assertCors,
  CACHE,
  get,
  ITEMS_SQL,
  parseBody,
  snapshotToEnd,
  type Reply,
  type WireMessage,
} from './shape-http-helpers.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Syncs `items` to its end over HTTP: the handle and the offset a live request starts from. */
async function syncToEnd(url: string): Promise<{ handle: string; offset: string; last: Reply }> {
  const replies = await snapshotToEnd(url, { table: 'items' });
  const last = replies.at(-1);
  assert.ok(last);
  return {
    handle: last.headers.get('electric-handle') ?? '',
    offset: last.headers.get('electric-offset') ?? '',
    last,
  };
}

/** Long-polls from `offset` until a message satisfies `found` (replication may lag behind). */
async function followUntil(
  url: string,
  handle: string,
  offset: string,
  found: (message: WireMessage) => boolean,
): Promise<void> {
  for (let from = offset, i = 0; i < 1_000; i++) {
    const reply = await get(url, {
      table: 'items',
      offset: from,
      handle,
      live: 'true',
      cursor: '',
    });
    assert.equal(reply.status, 200, reply.text);
    if (parseBody(reply).some(found)) return;
    from = reply.headers.get('electric-offset') ?? '';
  }
  throw new Error('never found');
}

describe('live requests', () => {
  test('a live request is held until a change arrives, then answers it with up-to-date', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ db, url }) => {
        const { handle, offset } = await syncToEnd(url);
        let insertedAt = Infinity;
        const live = get(
          url,
          { table: 'items', offset, handle, live: 'true', cursor: '' },
          { headers: { origin: 'https://app.example' } },
        ).then((reply) => ({ reply, at: Date.now() }));
        await sleep(500);
        insertedAt = Date.now();
        await db.query(`INSERT INTO items VALUES (1, 'held')`);
        const { reply, at } = await live;
        assert.ok(at >= insertedAt, 'answered only after the insert');
        assert.ok(at - insertedAt < 10_000, 'answered well before the 20 s long-poll timeout');
        assert.equal(reply.status, 200);
        const messages = parseBody(reply);
        assert.deepEqual(
          messages.map((m) => m.headers.operation ?? m.headers.control),
          ['insert', 'up-to-date'],
        );
        assert.deepEqual(messages[0]?.value, { id: '1', title: 'held' });
        assert.match(String(messages[0]?.headers.lsn), /^\d+$/);
        assert.equal(reply.headers.get('electric-up-to-date'), '');
        assert.match(reply.headers.get('electric-cursor') ?? '', /^\d+$/);
        assert.equal(reply.headers.get('electric-schema'), null);
        assert.equal(reply.headers.get('cache-control'), CACHE.live);
        assert.equal(reply.headers.get('electric-handle'), handle);
        const newOffset = reply.headers.get('electric-offset');
        assert.notEqual(newOffset, offset);
        assert.equal(reply.headers.get('etag'), `"${handle}:${offset}:${newOffset}"`);
        assertCors(reply);
      },
      { longPollTimeoutMs: 20_000 },
    );
  });

  test('a live request without changes returns up-to-date alone after the timeout, with a unique etag', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ url }) => {
        const { handle, offset } = await syncToEnd(url);
        const params = { table: 'items', offset, handle, live: 'true' };
        const first = await get(url, { ...params, cursor: '' });
        const cursor = first.headers.get('electric-cursor') ?? '';
        const second = await get(url, { ...params, cursor });
        for (const reply of [first, second]) {
          assert.equal(reply.status, 200);
          const messages = parseBody(reply);
          assert.equal(messages.length, 1);
          assert.equal(messages[0]?.headers.control, 'up-to-date');
          assert.equal(reply.headers.get('electric-up-to-date'), '');
          assert.equal(reply.headers.get('electric-offset'), offset);
          assert.equal(reply.headers.get('electric-schema'), null);
          assert.equal(reply.headers.get('cache-control'), CACHE.live);
          assert.notEqual(reply.headers.get('etag'), `"${handle}:${offset}:${offset}"`);
        }
        assert.match(cursor, /^\d+$/);
        assert.ok(
          Number(second.headers.get('electric-cursor')) > Number(cursor),
          'the next cursor moves past the one sent',
        );
        assert.notEqual(first.headers.get('etag'), second.headers.get('etag'));
      },
      { longPollTimeoutMs: 1_000 },
    );
  });

  test('offset=now: up-to-date at the current end offset, with a handle', async () => {
    await withSluice(
      postgres,
      `${ITEMS_SQL} INSERT INTO items VALUES (1, 'a');`,
      async ({ db, url }) => {
        const { handle, offset } = await syncToEnd(url);
        const live = get(url, { table: 'items', offset, handle, live: 'true', cursor: '' });
        await db.query(`INSERT INTO items VALUES (2, 'b')`);
        const end = (await live).headers.get('electric-offset');
        const now = await get(url, { table: 'items', offset: 'now', handle: 'ignored' });
        assert.equal(now.status, 200);
        assert.equal(now.headers.get('electric-handle'), handle);
        assert.equal(now.headers.get('electric-offset'), end);
        assert.deepEqual(
          parseBody(now).map((m) => m.headers.control),
          ['up-to-date'],
        );
        assert.equal(now.headers.get('electric-up-to-date'), '');
        // A non-live response: the official client requires a schema and must not see a cursor.
        assert.ok(now.headers.has('electric-schema'));
        assert.equal(now.headers.get('electric-cursor'), null);
        assertCors(now);
      },
      { longPollTimeoutMs: 20_000 },
    );
  });

  test('an offset beyond the end of the log is 400 out of bounds', async () => {
    await withSluice(postgres, ITEMS_SQL, async ({ db, url }) => {
      const { handle } = await syncToEnd(url);
      const live = get(url, {
        table: 'items',
        offset: '0_inf',
        handle,
        live: 'true',
        cursor: '',
      });
      await db.query(`INSERT INTO items VALUES (1, 'a')`);
      const end = (await live).headers.get('electric-offset') ?? '';
      const [tx] = end.split('_');
      for (const offset of [`${BigInt(tx ?? '0') + 1_000_000n}_0`, `${tx ?? '0'}_999`]) {
        const reply = await get(url, { table: 'items', offset, handle });
        assert.equal(reply.status, 400, offset);
        assert.deepEqual(reply.json(), {
          message: 'Invalid request',
          errors: { offset: ['out of bounds'] },
        });
      }
    });
  });
});

describe('admission control and shutdown', () => {
  test('beyond maxConcurrentLive held long-polls, a live request gets 503 with retry-after', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ url }) => {
        const { handle, offset } = await syncToEnd(url);
        const params = { table: 'items', offset, handle, live: 'true', cursor: '' };
        const held = [get(url, params), get(url, params)];
        await sleep(500);
        const refused = await get(url, params, { headers: { origin: 'https://app.example' } });
        assert.equal(refused.status, 503);
        assert.match(refused.headers.get('retry-after') ?? '', /^\d+$/);
        assert.equal(typeof (refused.json() as { message?: unknown }).message, 'string');
        assertCors(refused);
        // Non-live requests are not counted against the live limit.
        assert.equal((await get(url, { table: 'items', offset, handle })).status, 200);
        for (const reply of await Promise.all(held)) assert.equal(reply.status, 200);
        // Once the held ones are answered, live requests are admitted again.
        assert.equal((await get(url, params)).status, 200);
      },
      { maxConcurrentLive: 2, longPollTimeoutMs: 3_000 },
    );
  });

  test('closing the server ends a held long-poll promptly', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ url, sluice }) => {
        const { handle, offset } = await syncToEnd(url);
        const live = get(url, { table: 'items', offset, handle, live: 'true', cursor: '' }).then(
          (reply) => reply.status,
          (error: Error) => error.message,
        );
        await sleep(500);
        const closingAt = Date.now();
        await sluice.app.close();
        const outcome = await live;
        const elapsed = Date.now() - closingAt;
        assert.ok(elapsed < 10_000, `ended after ${elapsed} ms (long-poll timeout 30 s)`);
        assert.notEqual(outcome, 200, 'not answered as if it were a normal timeout');
      },
      { longPollTimeoutMs: 30_000 },
    );
  });
});

describe('chunks', () => {
  test('no response crosses the chunk threshold by more than one message', async () => {
    const chunkBytes = 10_240;
    const sql = `${ITEMS_SQL} INSERT INTO items
      SELECT i, 'row ' || i || ' ' || repeat('x', i % 97) FROM generate_series(1, 5000) i;`;
    await withSluice(
      postgres,
      sql,
      async ({ db, url }) => {
        const { handle, offset } = await syncToEnd(url);
        // And a log after the snapshot: many small transactions.
        await db.query(`DO $$ BEGIN
          FOR i IN 1..300 LOOP INSERT INTO items VALUES (10000 + i, 'log ' || i); COMMIT; END LOOP;
        END $$`);
        await followUntil(url, handle, offset, (m) => m.value?.id === '10300');
        const replies = await snapshotToEnd(url, { table: 'items' });
        const largestMessage = Math.max(
          ...replies.flatMap((r) => parseBody(r).map((m) => Buffer.byteLength(JSON.stringify(m)))),
        );
        const sizes = replies.map((r) => Buffer.byteLength(r.text));
        const over = sizes.filter((size) => size > chunkBytes + largestMessage + 2);
        assert.deepEqual(
          over,
          [],
          `responses over ${chunkBytes} B + one message (${largestMessage} B): ${sizes.join(', ')}`,
        );
      },
      { chunkBytes },
    );
  });
});
