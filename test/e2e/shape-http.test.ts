// Raw HTTP against a real Sluice, no client: parameters and 400 bodies, the header and
// cache-control matrix, ETags and 304, 409 must-refetch, CORS, DELETE and the secret
// (docs/protocol.md §2–5). Long-polls, offset=now, admission control, shutdown and chunk sizes are in
// shape-http-live.test.ts.
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
  toReply,
} from './shape-http-helpers.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

describe('GET /v1/shape parameters', () => {
  test('invalid requests get 400 {"message":"Invalid request","errors":{<param>:[…]}}', async () => {
    await withSluice(postgres, ITEMS_SQL, async ({ url }) => {
      const cases: [string, Record<string, string>][] = [
        ['table', { offset: '-1' }],
        ['table', { table: '', offset: '-1' }],
        ['offset', { table: 'items' }],
        ['offset', { table: 'items', offset: 'abc' }],
        ['offset', { table: 'items', offset: '-2' }],
        ['offset', { table: 'items', offset: '1_' }],
        ['offset', { table: 'items', offset: '_1' }],
        ['handle', { table: 'items', offset: '0_0' }],
        ['live', { table: 'items', offset: '-1', live: 'true' }],
        ['live', { table: 'items', offset: 'now', live: 'true' }],
        ['replica', { table: 'items', offset: '-1', replica: 'partial' }],
        ['log', { table: 'items', offset: '-1', log: 'everything' }],
        ['table', { table: 'no_such_table', offset: '-1' }],
        ['table', { table: 'a b', offset: '-1' }],
        ['columns', { table: 'items', offset: '-1', columns: 'id,nope' }],
        ['columns', { table: 'items', offset: '-1', columns: 'title' }],
      ];
      for (const [param, params] of cases) {
        const what = new URLSearchParams(params).toString();
        const reply = await get(url, params, { headers: { origin: 'https://app.example' } });
        assert.equal(reply.status, 400, what);
        assert.match(reply.headers.get('content-type') ?? '', /application\/json/, what);
        const body = reply.json() as { message: unknown; errors: Record<string, unknown> };
        assert.equal(body.message, 'Invalid request', what);
        assert.deepEqual(Object.keys(body.errors), [param], what);
        const reasons = body.errors[param];
        assert.ok(Array.isArray(reasons) && reasons.length > 0, what);
        for (const reason of reasons) assert.equal(typeof reason, 'string', what);
        assert.equal(reply.headers.get('cache-control'), 'no-store', what);
        assertCors(reply, what);
      }
    });
  });

  test('unknown parameters the official client adds are accepted', async () => {
    await withSluice(postgres, ITEMS_SQL, async ({ url }) => {
      const first = await get(url, {
        table: 'items',
        offset: '-1',
        log: 'full',
        'cache-buster': 'x',
      });
      assert.equal(first.status, 200);
      const handle = first.headers.get('electric-handle') ?? '';
      const offset = first.headers.get('electric-offset') ?? '';
      const next = await get(url, {
        table: 'items',
        offset,
        handle,
        cursor: '',
        expired_handle: 'old',
        log: 'full',
        unknown: '1',
      });
      assert.equal(next.status, 200);
      assert.ok(next.headers.has('electric-up-to-date'));
    });
  });
});

describe('headers, caching and ETags', () => {
  test('offset=-1: long cache, schema, no cursor, never up-to-date, snapshot-end last', async () => {
    const sql = `${ITEMS_SQL} INSERT INTO items VALUES (1, 'a'), (2, NULL);`;
    await withSluice(postgres, sql, async ({ url }) => {
      const initial = await get(url, { table: 'items', offset: '-1' });
      assert.equal(initial.status, 200);
      assert.equal(initial.headers.get('cache-control'), CACHE.initial);
      const handle = initial.headers.get('electric-handle');
      const offset = initial.headers.get('electric-offset');
      assert.ok(handle && offset);
      assert.deepEqual(JSON.parse(initial.headers.get('electric-schema') ?? ''), {
        id: { type: 'int4', pk_index: 0, not_null: true },
        title: { type: 'text' },
      });
      assert.equal(initial.headers.get('electric-cursor'), null);
      assert.equal(initial.headers.get('electric-up-to-date'), null);
      const messages = parseBody(initial);
      assert.ok(!messages.some((m) => m.headers.control === 'up-to-date'));
      assert.deepEqual(
        messages.filter((m) => m.key !== undefined).map((m) => m.value),
        [
          { id: '1', title: 'a' },
          { id: '2', title: null },
        ],
      );
      assert.equal(messages.at(-1)?.headers.control, 'snapshot-end');
      assert.equal(initial.headers.get('etag'), `"${handle}:-1:${offset}"`);
      assertCors(initial);

      // The same ETag in If-None-Match: 304, same headers, no body.
      const etag = initial.headers.get('etag') ?? '';
      const cached = await get(
        url,
        { table: 'items', offset: '-1' },
        { headers: { 'if-none-match': etag } },
      );
      assert.equal(cached.status, 304);
      assert.equal(cached.text, '');
      assert.equal(cached.headers.get('electric-handle'), handle);
      assert.equal(cached.headers.get('electric-offset'), offset);
      assert.equal(cached.headers.get('etag'), etag);
      assertCors(cached);

      // Catch-up to the end: shorter cache, schema, up-to-date last and in a header.
      const catchUp = await get(url, { table: 'items', offset, handle });
      assert.equal(catchUp.status, 200);
      assert.equal(catchUp.headers.get('cache-control'), CACHE.catchUp);
      assert.ok(catchUp.headers.has('electric-schema'));
      assert.equal(catchUp.headers.get('electric-cursor'), null);
      assert.equal(catchUp.headers.get('electric-up-to-date'), '');
      const last = parseBody(catchUp).at(-1);
      assert.equal(last?.headers.control, 'up-to-date');
      assert.match(String(last?.headers.global_last_seen_lsn), /^\d+$/);
      const endOffset = catchUp.headers.get('electric-offset');
      assert.equal(catchUp.headers.get('etag'), `"${handle}:${offset}:${endOffset}"`);
      const again = await get(
        url,
        { table: 'items', offset, handle },
        { headers: { 'if-none-match': catchUp.headers.get('etag') ?? '' } },
      );
      assert.equal(again.status, 304);
      assertCors(catchUp);
    });
  });

  test('a multi-chunk snapshot: up-to-date only at the end, snapshot-end once, on the last snapshot chunk', async () => {
    const sql = `${ITEMS_SQL} INSERT INTO items SELECT i, repeat('x', 50) FROM generate_series(1, 2000) i;`;
    await withSluice(
      postgres,
      sql,
      async ({ url }) => {
        const chunks = await snapshotToEnd(url, { table: 'items' });
        assert.ok(chunks.length >= 3, `${chunks.length} responses`);
        const ends = chunks.flatMap((c, i) =>
          parseBody(c).flatMap((m, j) => (m.headers.control === 'snapshot-end' ? [[i, j]] : [])),
        );
        assert.equal(ends.length, 1, 'one snapshot-end');
        const [chunkIndex] = ends[0] ?? [];
        const snapshotEndChunk = chunks[chunkIndex ?? -1];
        assert.ok(snapshotEndChunk);
        const messages = parseBody(snapshotEndChunk);
        const control = messages.filter((m) => m.headers.control !== undefined);
        // Last in its chunk, or followed only by up-to-date when the server served the end there.
        assert.ok(
          ['snapshot-end', 'up-to-date'].includes(String(messages.at(-1)?.headers.control)),
        );
        assert.ok(
          control.every((m) => ['snapshot-end', 'up-to-date'].includes(String(m.headers.control))),
        );
        for (const [i, chunk] of chunks.entries()) {
          const isLast = i === chunks.length - 1;
          assert.equal(chunk.headers.has('electric-up-to-date'), isLast, `chunk ${i}`);
          const upToDate = parseBody(chunk).filter((m) => m.headers.control === 'up-to-date');
          assert.equal(upToDate.length, isLast ? 1 : 0, `chunk ${i}`);
        }
        const rows = chunks.flatMap((c) => parseBody(c).filter((m) => m.key !== undefined));
        assert.equal(rows.length, 2000);
        assert.equal(new Set(rows.map((m) => m.key)).size, 2000);
      },
      { chunkBytes: 10_240 },
    );
  });

  test('409 must-refetch for an unknown handle names the current handle', async () => {
    await withSluice(postgres, ITEMS_SQL, async ({ url }) => {
      const initial = await get(url, { table: 'items', offset: '-1' });
      const handle = initial.headers.get('electric-handle');
      const requests: Record<string, string>[] = [
        { table: 'items', offset: '0_0', handle: 'no-such-handle' },
        { table: 'items', offset: '0_inf', handle: 'no-such-handle', live: 'true', cursor: '' },
      ];
      for (const params of requests) {
        const reply = await get(url, params, { headers: { origin: 'https://app.example' } });
        assert.equal(reply.status, 409);
        assert.equal(reply.text, '[{"headers":{"control":"must-refetch"}}]');
        assert.equal(reply.headers.get('electric-handle'), handle);
        assert.equal(reply.headers.get('cache-control'), CACHE.mustRefetch);
        assertCors(reply);
      }
    });
  });
});

describe('CORS, DELETE and the secret', () => {
  test('OPTIONS preflight is a 204 with CORS headers', async () => {
    await withSluice(postgres, ITEMS_SQL, async ({ url }) => {
      const reply = await fetch(`${url}?table=items&offset=-1`, {
        method: 'OPTIONS',
        headers: {
          origin: 'https://app.example',
          'access-control-request-method': 'GET',
          'access-control-request-headers': 'authorization',
        },
      });
      assert.equal(reply.status, 204);
      assert.ok(reply.headers.get('access-control-allow-origin'));
      const methods = reply.headers.get('access-control-allow-methods') ?? '';
      for (const method of ['GET', 'DELETE']) assert.match(methods, new RegExp(method));
    });
  });

  test('DELETE is 405 when disabled', async () => {
    await withSluice(postgres, ITEMS_SQL, async ({ url }) => {
      await get(url, { table: 'items', offset: '-1' });
      const reply = await fetch(`${url}?table=items`, {
        method: 'DELETE',
        headers: { origin: 'https://app.example' },
      });
      assert.equal(reply.status, 405);
      assertCors(await toReply(reply));
    });
  });

  test('DELETE when enabled: 202, then the old handle gets 409; unknown shapes 404', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ url }) => {
        const initial = await get(url, { table: 'items', offset: '-1' });
        const handle = initial.headers.get('electric-handle') ?? '';
        const offset = initial.headers.get('electric-offset') ?? '';
        const deleted = await fetch(`${url}?table=items`, { method: 'DELETE' });
        assert.equal(deleted.status, 202);
        assertCors(await toReply(deleted));

        const stale = await get(url, { table: 'items', offset, handle });
        assert.equal(stale.status, 409);
        const fresh = stale.headers.get('electric-handle');
        assert.ok(fresh && fresh !== handle, 'a new handle, never the deleted one');

        const byOldHandle = await fetch(`${url}?handle=${encodeURIComponent(handle)}`, {
          method: 'DELETE',
        });
        assert.equal(byOldHandle.status, 404);
        const never = await fetch(`${url}?table=items&columns=id`, { method: 'DELETE' });
        assert.equal(never.status, 404);
        const byHandle = await fetch(`${url}?handle=${encodeURIComponent(fresh)}`, {
          method: 'DELETE',
        });
        assert.equal(byHandle.status, 202);
      },
      { enableShapeDelete: true },
    );
  });

  test('with a secret: 401 without it or with a wrong one, 200 with it', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ url }) => {
        const requests: Record<string, string>[] = [
          { table: 'items', offset: '-1' },
          { table: 'items', offset: '-1', secret: 'wrong' },
        ];
        for (const params of requests) {
          const reply = await get(url, params, { headers: { origin: 'https://app.example' } });
          assert.equal(reply.status, 401);
          assert.equal(reply.headers.get('cache-control'), 'no-store');
          assertCors(reply);
        }
        const ok = await get(url, { table: 'items', offset: '-1', secret: 's3' });
        assert.equal(ok.status, 200);
      },
      { secret: 's3' },
    );
  });
});
