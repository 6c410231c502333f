// Hardening of the HTTP surface (issue 13): bounded connections and live requests per client,
// the secret (constant-time, bearer header, never logged, /metrics), no database text in 503s,
// handles refused before they reach a header, and reads racing a shape's deletion.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPostgres, terminateWalsender, type TestPostgres } from '@sluice/harness';
import { startServerProcess } from '../support/server-process.js';
import { waitForStatus } from '../support/server-status.js';
import { withSluice } from '../support/shape-oracle.js';
import { get, ITEMS_SQL, snapshotToEnd } from './shape-http-helpers.js';

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const ROWS_SQL = `${ITEMS_SQL}
  INSERT INTO items SELECT g, repeat('x', 200) FROM generate_series(1, 2000) AS g;`;

describe('reads racing a deletion', () => {
  test('a read of a shape deleted under it is a 409 naming the new handle, never a 500', async () => {
    await withSluice(
      postgres,
      ROWS_SQL,
      async ({ url }) => {
        for (let round = 0; round < 8; round++) {
          // Every chunk's offset: catch-up reads of sealed chunks go to disk.
          const replies = await snapshotToEnd(url, { table: 'items' });
          const handle = replies[0]?.headers.get('electric-handle') ?? '';
          const offsets = replies.map((reply) => reply.headers.get('electric-offset') ?? '');
          const reads = [];
          for (let i = 0; i < 4; i++) {
            reads.push(get(url, { table: 'items', offset: '-1' }));
            for (const offset of offsets) reads.push(get(url, { table: 'items', offset, handle }));
          }
          const deleted = fetch(`${url}?table=items`, { method: 'DELETE' });
          const [deletion, ...answers] = await Promise.all([deleted, ...reads]);
          for (const reply of answers) {
            assert.ok([200, 409].includes(reply.status), `${reply.status}: ${reply.text}`);
            if (reply.status === 409) {
              const fresh = reply.headers.get('electric-handle');
              assert.ok(fresh && fresh !== handle, 'a 409 names the shape made anew');
            }
          }
          assert.ok([202, 404].includes(deletion.status));
        }
      },
      { enableShapeDelete: true, chunkBytes: 4096 },
    );
  });

  test('a request waiting past the end of a shape deleted meanwhile is a 409, not a 400', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ url }) => {
        const first = await get(url, { table: 'items', offset: '-1' });
        const handle = first.headers.get('electric-handle') ?? '';
        // Past the end: held for a moment in case a flush lands, then out of bounds.
        const ahead = get(url, { table: 'items', offset: '999999999_0', handle });
        await sleep(300);
        assert.equal((await fetch(`${url}?table=items`, { method: 'DELETE' })).status, 202);
        const reply = await ahead;
        assert.equal(reply.status, 409, reply.text);
        assert.notEqual(reply.headers.get('electric-handle'), handle);
      },
      { enableShapeDelete: true },
    );
  });
});

describe('handles', () => {
  test('in fallback, a handle with CR/LF or bytes a header cannot hold is a 400 naming handle', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ db, url, sluice }) => {
        await terminateWalsender(db, db.slotName);
        await waitForStatus(sluice.baseUrl, 'fallback', 5_000);
        for (const handle of [
          'abcd1234-fallback-1\r\nx-injected: 1',
          'abcd1234-fallback-\u{1F600}',
        ]) {
          const reply = await get(url, { table: 'items', offset: '0_inf', handle });
          assert.equal(reply.status, 400, reply.text);
          assert.deepEqual(reply.json(), {
            message: 'Invalid request',
            errors: { handle: ['must be 1 to 128 letters, digits, _ or -'] },
          });
        }
        // A well-formed fallback handle is still answered.
        const ok = await get(url, {
          table: 'items',
          offset: '0_inf',
          handle: 'abcd1234-fallback-1',
        });
        assert.equal(ok.status, 200, ok.text);
      },
      { replicationRetryMinMs: 10_000, replicationRetryMaxMs: 10_000 },
    );
  });
});

describe('the secret', () => {
  test('accepted as a parameter or a bearer header, on GET and DELETE; wrong ones are 401', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ url }) => {
        const shape = { table: 'items', offset: '-1' };
        const bearer = (secret: string) => ({ headers: { authorization: `Bearer ${secret}` } });
        assert.equal((await get(url, shape, bearer('s3cret'))).status, 200);
        assert.equal((await get(url, shape, bearer('s3cre'))).status, 401);
        assert.equal((await get(url, shape, bearer('s3crets'))).status, 401);
        assert.equal((await get(url, { ...shape, secret: 's3cret' })).status, 200);
        assert.equal((await get(url, { ...shape, secret: 'S3CRET' })).status, 401);
        const refused = await get(url, shape);
        assert.equal(refused.status, 401);
        assert.equal(refused.headers.get('cache-control'), 'no-store');
        // Deleting needs it too.
        assert.equal((await fetch(`${url}?table=items`, { method: 'DELETE' })).status, 401);
        const deleted = await fetch(`${url}?table=items`, {
          method: 'DELETE',
          ...bearer('s3cret'),
        });
        assert.equal(deleted.status, 202);
      },
      { secret: 's3cret', enableShapeDelete: true },
    );
  });

  test('/metrics needs it when SLUICE_METRICS_REQUIRE_SECRET is on, and only then', async () => {
    for (const metricsRequireSecret of [false, true]) {
      await withSluice(
        postgres,
        ITEMS_SQL,
        async ({ sluice }) => {
          const metrics = `${sluice.baseUrl}/metrics`;
          const bare = await fetch(metrics);
          assert.equal(bare.status, metricsRequireSecret ? 401 : 200);
          const withHeader = await fetch(metrics, { headers: { authorization: 'Bearer m' } });
          assert.equal(withHeader.status, 200);
          assert.match(await withHeader.text(), /^sluice_state/m);
          assert.equal((await fetch(`${metrics}?secret=m`)).status, 200);
          const wrong = await fetch(`${metrics}?secret=x`);
          assert.equal(wrong.status, metricsRequireSecret ? 401 : 200);
        },
        { secret: 'm', metricsRequireSecret },
      );
    }
  });

  test('is never written to the log, however its parameter name is encoded', async () => {
    const db = await postgres.createDatabase();
    const storageDir = await mkdtemp(join(tmpdir(), 'sluice-storage-'));
    const secret = 'do-not-log-me-7f3a';
    const server = await startServerProcess({
      DATABASE_URL: db.url,
      SLUICE_SLOT_NAME: db.slotName,
      SLUICE_PUBLICATION_NAME: db.publicationName,
      SLUICE_STORAGE_DIR: storageDir,
      SLUICE_PORT: '0',
      SLUICE_LOG_LEVEL: 'info',
      SLUICE_SECRET: secret,
    });
    try {
      await db.query(ITEMS_SQL);
      const url = `${server.baseUrl}/v1/shape`;
      for (const query of [`secret=${secret}`, `%73ecret=${secret}`, `a=1&secret=${secret}x`]) {
        await fetch(`${url}?table=items&offset=-1&${query}`);
      }
      await fetch(`${server.baseUrl}/no/such/path?secret=${secret}`);
      await sleep(300);
      const logged = server.stdout();
      assert.match(logged, /"url":"\/v1\/shape\?table=items&offset=-1&secret=\[redacted\]"/);
      assert.match(logged, /%73ecret=\[redacted\]/);
      assert.ok(!logged.includes(secret), `the secret is in the log:\n${logged}`);
    } finally {
      await server.stop();
      await rm(storageDir, { recursive: true, force: true });
      await db.drop();
    }
  });
});

describe('live requests per client', () => {
  const HELD = 2;
  const live = async (url: string, headers: Record<string, string> = {}) => {
    const first = await get(url, { table: 'items', offset: '-1' });
    const params = {
      table: 'items',
      handle: first.headers.get('electric-handle') ?? '',
      offset: first.headers.get('electric-offset') ?? '',
      live: 'true',
      cursor: '',
    };
    return () => get(url, params, { headers });
  };

  test('one client address beyond its cap gets 503 SLUICE_ERR_OVERLOADED_PER_CLIENT; others are served', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ url }) => {
        const request = await live(url);
        const held = Array.from({ length: HELD }, () => request());
        await sleep(500);
        const refused = await request();
        assert.equal(refused.status, 503);
        assert.equal(refused.headers.get('retry-after'), '1');
        assert.equal(refused.headers.get('cache-control'), 'no-store');
        assert.equal((refused.json() as { code: string }).code, 'SLUICE_ERR_OVERLOADED_PER_CLIENT');
        for (const reply of await Promise.all(held)) assert.equal(reply.status, 200);
        // Its requests answered, the client is admitted again.
        assert.equal((await request()).status, 200);
      },
      { maxLivePerClient: HELD, longPollTimeoutMs: 2_000 },
    );
  });

  test('behind a trusted proxy, the cap counts by the address the proxy puts in the header', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ url }) => {
        const from = (list: string) => live(url, { 'x-forwarded-for': list });
        const client = await from('203.0.113.7');
        const held = Array.from({ length: HELD }, () => client());
        await sleep(500);
        // The last entry is the proxy's; earlier ones are the client's to invent.
        const spoofing = await (await from('198.51.100.1, 203.0.113.7'))();
        assert.equal(spoofing.status, 503);
        const other = (await from('203.0.113.7, 203.0.113.8'))();
        const noHeader = (await live(url))();
        assert.equal((await other).status, 200);
        assert.equal((await noHeader).status, 200);
        for (const reply of await Promise.all(held)) assert.equal(reply.status, 200);
      },
      { maxLivePerClient: HELD, longPollTimeoutMs: 2_000, clientAddressHeader: 'x-forwarded-for' },
    );
  });
});

/** Resolves when the server closes `socket`, with what it sent meanwhile; or after `limitMs`. */
function closedWithin(socket: Socket, limitMs: number): Promise<{ closed: boolean; text: string }> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ closed: false, text });
    }, limitMs);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, text });
    });
  });
}

describe('connections are not held open', () => {
  test('a request whose headers never end gets 408 and is closed; so is an idle keep-alive', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ sluice }) => {
        const { port } = new URL(sluice.baseUrl);
        const slow = connect(Number(port), '127.0.0.1');
        slow.write('GET /v1/health HTTP/1.1\r\nHost: sluice\r\nx-slow: 1\r\n');
        const started = Date.now();
        const cut = await closedWithin(slow, 5_000);
        assert.ok(cut.closed, `closed after ${Date.now() - started} ms`);
        assert.match(cut.text, /^HTTP\/1\.1 408/);

        const idle = connect(Number(port), '127.0.0.1');
        idle.write('GET /v1/health HTTP/1.1\r\nHost: sluice\r\n\r\n');
        const after = await closedWithin(idle, 5_000);
        assert.ok(after.closed, 'an idle keep-alive connection is closed');
        assert.match(after.text, /^HTTP\/1\.1 200/);
      },
      { requestTimeoutMs: 1_000, keepAliveTimeoutMs: 1_000 },
    );
  });

  test('a held long-poll is not cut by the connection timeout', async () => {
    await withSluice(
      postgres,
      ITEMS_SQL,
      async ({ url, sluice }) => {
        const first = await get(url, { table: 'items', offset: '-1' });
        const params = {
          table: 'items',
          handle: first.headers.get('electric-handle') ?? '',
          offset: first.headers.get('electric-offset') ?? '',
          live: 'true',
          cursor: '',
        };
        const started = Date.now();
        const reply = await get(url, params);
        assert.equal(reply.status, 200);
        assert.ok(Date.now() - started >= sluice.config.longPollTimeoutMs - 200);
      },
      { requestTimeoutMs: 1_000, longPollTimeoutMs: 3_000 },
    );
  });
});
