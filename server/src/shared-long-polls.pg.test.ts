// Held long-polls of one shape woken by one flush share one answer (http/shared-live-answer.ts):
// one log read, byte-identical bodies, the same headers. In-process, so that the log's reads can
// be counted; over real HTTP against a real Postgres and replication.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { formatLogOffset, type LogOffset, type StatusDocument } from '@sluice/protocol';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import { loadConfig } from './config/load-config.js';
import { DiskShapeLog } from './storage/disk-shape-log.js';

const HELD = 40;

let postgres: TestPostgres;
let db: TestDatabase;
let app: FastifyInstance;
let storageDir: string;
let baseUrl: string;

before(async () => {
  postgres = await startPostgres();
  db = await postgres.createDatabase();
  await db.query(`CREATE TABLE items (id int PRIMARY KEY, title text);
                  INSERT INTO items VALUES (1, 'first')`);
  storageDir = await mkdtemp(join(tmpdir(), 'sluice-storage-'));
  app = await buildApp({
    ...loadConfig({}),
    databaseUrl: db.url,
    port: 0,
    logLevel: 'warn',
    slotName: db.slotName,
    publicationName: db.publicationName,
    storageDir,
    longPollTimeoutMs: 60_000,
  });
  baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
  const status = async () =>
    ((await (await fetch(`${baseUrl}/v1/status`)).json()) as StatusDocument).status;
  while ((await status()) !== 'live') {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});

after(async () => {
  await app.close();
  await rm(storageDir, { recursive: true, force: true });
  await db.drop();
  await postgres.stop();
});

const shapeUrl = (params: Record<string, string>) =>
  `${baseUrl}/v1/shape?${new URLSearchParams({ table: 'items', ...params }).toString()}`;

/** The held long-polls counted by /metrics. */
async function heldLongPolls(): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('sluice_http_long_polls_held '));
  return Number(line?.split(' ')[1] ?? NaN);
}

test('held long-polls woken by one flush share one log read, one body and the same headers', async () => {
  // To the end of the shape: its handle and the offset a live request starts from.
  let handle = '';
  let offset = '-1';
  for (;;) {
    const response = await fetch(shapeUrl(handle ? { offset, handle } : { offset }));
    assert.equal(response.status, 200);
    await response.arrayBuffer();
    handle = response.headers.get('electric-handle') ?? '';
    offset = response.headers.get('electric-offset') ?? '';
    if (response.headers.has('electric-up-to-date')) break;
  }

  // Every read of the log after the held offset is counted; the reads themselves are real.
  let reads = 0;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- restored below, called with its log
  const read = DiskShapeLog.prototype.read;
  DiskShapeLog.prototype.read = function (this: DiskShapeLog, after: LogOffset | 'before-all') {
    if (after !== 'before-all' && formatLogOffset(after) === offset) reads++;
    return read.call(this, after);
  };
  try {
    const held = Array.from({ length: HELD }, () =>
      fetch(shapeUrl({ offset, handle, live: 'true', cursor: '' }), {
        headers: { origin: 'https://app.example' },
      }),
    );
    while ((await heldLongPolls()) < HELD) await new Promise((r) => setTimeout(r, 20));
    await db.query(`INSERT INTO items VALUES (2, 'second')`);
    const responses = await Promise.all(held);
    const bodies = await Promise.all(
      responses.map(async (r) => Buffer.from(await r.arrayBuffer())),
    );

    assert.equal(reads, 1, 'one log read for every held long-poll');
    const [first] = responses;
    assert.ok(first);
    const headersOf = (response: Response) =>
      [...response.headers].filter(([name]) => name !== 'date');
    for (const [i, response] of responses.entries()) {
      assert.equal(response.status, 200);
      assert.deepEqual(headersOf(response), headersOf(first), `headers of response ${i}`);
      assert.ok(bodies[i]?.equals(bodies[0]!), `body of response ${i}`);
    }
    const messages = JSON.parse(bodies[0]!.toString()) as { value?: { title: string } }[];
    assert.equal(messages[0]?.value?.title, 'second');
    assert.equal(first.headers.get('access-control-allow-origin'), '*');
    assert.equal(first.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(first.headers.get('content-length'), String(bodies[0]!.length));
    assert.ok(first.headers.has('electric-up-to-date'));
  } finally {
    DiskShapeLog.prototype.read = read;
  }
});
