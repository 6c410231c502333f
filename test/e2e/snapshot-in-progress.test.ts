// A snapshot is served while it is being written: each chunk as soon as it is sealed and durable
// (docs/architecture.md, "Snapshots"). The answers must be exactly those a reader gets once the
// snapshot is complete: same bodies, offsets, chunk boundaries and headers.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import {
  assertMatchesPostgres,
  unrefClientSaveTimers,
  withSluice,
} from '../support/shape-oracle.js';
import { get, parseBody, snapshotToEnd, type Reply } from './shape-http-helpers.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

// ~2 MB of messages in 10 kB chunks: hundreds of chunks, each synced before it is served, so the
// snapshot is still being written long after its first chunk is sealed.
const ROWS = 20_000;
const SQL = `CREATE TABLE items (id int PRIMARY KEY, title text, n int);
  INSERT INTO items SELECT i, 'row ' || i || ' ' || repeat('x', i % 41), i FROM generate_series(1, ${ROWS}) i;`;
const CHUNKS = { chunkBytes: 10_240 };

/** What the server has recorded of a shape's snapshot: complete or not. */
async function snapshotComplete(storageDir: string, handle: string): Promise<boolean> {
  const text = await readFile(join(storageDir, 'shapes', handle, 'shape.json'), 'utf8');
  return (JSON.parse(text) as { snapshotComplete: boolean }).snapshotComplete;
}

/** The headers two answers at the same (handle, offset) must share, whenever they are made. */
function servedHeaders(reply: Reply): Record<string, string | null> {
  const names = [
    'electric-handle',
    'electric-offset',
    'electric-schema',
    'electric-up-to-date',
    'electric-has-data',
    'electric-cursor',
    'cache-control',
    'etag',
  ];
  return Object.fromEntries(names.map((name) => [name, reply.headers.get(name)]));
}

describe('a snapshot served while it is being written', () => {
  test('the first chunk comes before the snapshot ends, and every chunk equals what a later reader gets', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ url, sluice }) => {
        const first = await get(url, { table: 'items', offset: '-1' });
        assert.equal(first.status, 200, first.text);
        const handle = first.headers.get('electric-handle') ?? '';
        // Ordering, not time: the server had not finished the snapshot when chunk 0 arrived.
        assert.equal(await snapshotComplete(sluice.storageDir, handle), false);
        assert.equal(first.headers.get('electric-offset'), '0_0');

        const early: Reply[] = [first];
        let offset = '0_0';
        while (!early.at(-1)!.headers.has('electric-up-to-date')) {
          const reply = await get(url, { table: 'items', handle, offset });
          assert.equal(reply.status, 200, reply.text);
          early.push(reply);
          offset = reply.headers.get('electric-offset') ?? '';
        }
        assert.ok(early.length > 20, `${early.length} responses`);
        const keys = early.flatMap((r) => parseBody(r).flatMap((m) => (m.key ? [m.key] : [])));
        assert.equal(new Set(keys).size, ROWS);

        // Once complete: the same answers, byte for byte, at the same offsets (what a cache holds).
        const late = await snapshotToEnd(url, { table: 'items' });
        assert.equal(late.length, early.length);
        for (const [i, reply] of late.entries()) {
          assert.deepEqual(servedHeaders(reply), servedHeaders(early[i]!), `response ${i}`);
          const isUpToDate = reply.headers.has('electric-up-to-date');
          // The last answer's up-to-date names the replication position of its moment.
          if (!isUpToDate) assert.equal(reply.text, early[i]!.text, `body of response ${i}`);
        }
      },
      CHUNKS,
    );
  });

  test('the official client, asking first, gets rows equal to SELECT', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ db, open, sluice }) => {
        const { shape, stream } = open({ params: { table: 'items' } });
        // The stream's first batch: the snapshot was not complete when it was served.
        const firstBatch = new Promise<boolean>((resolve) => {
          const unsubscribe = stream.subscribe(() => {
            unsubscribe();
            resolve(snapshotComplete(sluice.storageDir, stream.shapeHandle ?? ''));
          });
        });
        assert.equal(await firstBatch, false);
        await shape.rows;
        await assertMatchesPostgres(db, { table: 'items' }, shape);
      },
      CHUNKS,
    );
  });
});
