import assert from 'node:assert/strict';
import fs from 'node:fs';
import { basename } from 'node:path';
import { syncBuiltinESMExports } from 'node:module';
import { after, before, test } from 'node:test';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import { lsnToBigInt } from '@sluice/protocol';
import { rawRequest, type RawReply } from '../support/raw-shape.js';
import { fetchStatus } from '../support/server-status.js';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';

/** Stored shapes: `owner = $1` for owners 0…SHAPES_PER_TABLE-1 on each of TABLES. */
const TABLES = ['items', 'items_1', 'items_2', 'items_3'];
const SHAPES_PER_TABLE = 500;
const SHAPES = TABLES.length * SHAPES_PER_TABLE;
/** Owners (of `items`) whose shapes hold rows, are followed across the restart and get rows meanwhile. */
const FOLLOWED = [0, 1, 2, 3, 4];
/**
 * Each stored `shape.json` takes this long to read in the restarted server, so that reading them
 * one after another takes longer than Fastify's start-up hooks may (10 s): a slow disk, or more
 * shapes, as in the benchmark that found it.
 */
const SLOW_READ_MS = 6;

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

interface Followed {
  handle: string;
  offset: string;
  rows: Map<string, string | null>;
}

/**
 * Start-up must not wait for the stored shapes: the restarted server listens while they are
 * still being reopened, refuses (or holds) requests for them until then without ever making a
 * second shape for a stored definition, and then serves them under their old handles with the
 * changes committed meanwhile.
 */
test('a server with thousands of stored shapes listens at once and loses nothing', async () => {
  const db = await pg.createDatabase();
  for (const table of TABLES) {
    await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, owner int NOT NULL, v int)`);
  }
  await db.query(
    `INSERT INTO items SELECT g, g % ${FOLLOWED.length}, g FROM generate_series(1, 50) g`,
  );
  const first = await startSluice(db, { maxConcurrentInitial: 64 });
  const followed = new Map<number, Followed>();
  try {
    await waitUntilLive(first.baseUrl);
    const shapes = TABLES.flatMap((table) =>
      Array.from({ length: SHAPES_PER_TABLE }, (_, owner) => ({ table, owner })),
    );
    await forEachConcurrently(shapes, 16, async ({ table, owner }) => {
      const reply = await rawRequest(first.baseUrl, shapeParams(owner, '-1', undefined, table));
      assert.equal(reply.status, 200, `creating ${table}'s shape of owner ${owner}: ${reply.text}`);
    });
    for (const owner of FOLLOWED) {
      followed.set(owner, await readUpToDate(first.baseUrl, owner, undefined));
    }
  } finally {
    await first.close({ keepStorage: true });
  }

  const restoreReads = slowShapeFileReads();
  let second;
  try {
    // Before the fix the start failed here: FST_ERR_HOOK_TIMEOUT from the onReady hook.
    second = await startSluice(db, { storageDir: first.storageDir });
    const { baseUrl } = second;
    // Listening did not wait for the stored shapes.
    assert.ok((await fetchStatus(baseUrl)).shapes.count < SHAPES, 'listening before loading ends');
    const health = await fetch(`${baseUrl}/v1/health`);
    assert.ok([200, 202].includes(health.status), `/v1/health answers (${health.status})`);

    // Changes committed while the stored shapes load.
    await db.query(
      `INSERT INTO items SELECT g, g % ${FOLLOWED.length}, g FROM generate_series(51, 80) g`,
    );
    await db.query('UPDATE items SET v = -v WHERE id % 7 = 0');
    await db.query('DELETE FROM items WHERE id % 11 = 0');
    const { rows } = await db.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const written = lsnToBigInt(rows[0]!.lsn);

    // A stored shape is held or refused while loading, never made again under a new handle.
    const early = await rawRequest(baseUrl, shapeParams(0, '-1'));
    assertServedOrNotReady(early, followed.get(0)!.handle);

    await waitUntilLive(baseUrl);
    for (const [owner, before] of followed) {
      const now = await readUpToDate(baseUrl, owner, before, written);
      assert.equal(now.handle, before.handle, `owner ${owner} keeps its handle`);
      assert.deepEqual(sorted(now.rows), await selectRows(db, owner), `owner ${owner} = SELECT`);
    }
    assert.equal((await fetchStatus(baseUrl)).shapes.count, SHAPES, 'no shape made twice');
  } finally {
    restoreReads();
    await second?.close();
    await db.drop();
  }
});

function shapeParams(
  owner: number,
  offset: string,
  handle?: string,
  table = 'items',
): Record<string, string> {
  return {
    table,
    where: 'owner = $1',
    'params[1]': String(owner),
    offset,
    ...(handle === undefined ? {} : { handle }),
  };
}

function assertServedOrNotReady(reply: RawReply, storedHandle: string): void {
  if (reply.status === 503) {
    assert.equal((JSON.parse(reply.text) as { code: string }).code, 'SLUICE_ERR_NOT_READY');
    assert.ok(reply.headers.get('retry-after'), '503 has retry-after');
    return;
  }
  assert.equal(reply.status, 200, reply.text);
  assert.equal(
    reply.headers.get('electric-handle'),
    storedHandle,
    'the stored shape, not a new one',
  );
}

/**
 * Reads a shape up to date, from the start or from where `from` left off (applying to its rows),
 * and on until the server has seen the WAL up to `minLsn` (`global_last_seen_lsn`); 503s are
 * retried. Any other answer than 200 fails: a 409 would be a refetch.
 */
async function readUpToDate(
  baseUrl: string,
  owner: number,
  from: Followed | undefined,
  minLsn = 0n,
): Promise<Followed> {
  const rows = new Map(from?.rows ?? []);
  let handle = from?.handle;
  let offset = from?.offset ?? '-1';
  for (let i = 0; i < 1_000; i++) {
    const reply = await rawRequest(baseUrl, shapeParams(owner, offset, handle));
    if (reply.status === 503) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      continue;
    }
    assert.equal(reply.status, 200, `owner ${owner} at ${offset}: ${reply.status} ${reply.text}`);
    handle = reply.headers.get('electric-handle') ?? '';
    offset = reply.headers.get('electric-offset') ?? '';
    const messages = JSON.parse(reply.text) as {
      key?: string;
      value?: { v: string | null };
      headers: { operation?: string; global_last_seen_lsn?: string };
    }[];
    for (const { key, value, headers } of messages) {
      if (key === undefined) continue;
      if (headers.operation === 'delete') rows.delete(key);
      else rows.set(key, value?.v ?? rows.get(key) ?? null);
    }
    const seen = BigInt(messages.at(-1)?.headers.global_last_seen_lsn ?? '0');
    if (reply.headers.has('electric-up-to-date') && seen >= minLsn) {
      return { handle, offset, rows };
    }
    if (reply.headers.has('electric-up-to-date')) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`owner ${owner} never became up to date`);
}

async function selectRows(db: TestDatabase, owner: number): Promise<[string, string | null][]> {
  const { rows } = await db.query<{ id: number; v: string | null }>(
    'SELECT id, v::text AS v FROM items WHERE owner = $1',
    [owner],
  );
  return sorted(new Map(rows.map((row) => [`"public"."items"/"${row.id}"`, row.v])));
}

function sorted(rows: Map<string, string | null>): [string, string | null][] {
  return [...rows].sort(([a], [b]) => a.localeCompare(b));
}

async function forEachConcurrently<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/**
 * Every read of a `shape.json` (the server runs in this process) takes SLOW_READ_MS longer until
 * the returned function is called. The disk is slowed, nothing is answered in its place.
 */
function slowShapeFileReads(): () => void {
  const original = fs.promises.readFile;
  const slowed = async (...args: Parameters<typeof original>) => {
    const [path] = args;
    if (typeof path === 'string' && basename(path) === 'shape.json') {
      await new Promise((resolve) => setTimeout(resolve, SLOW_READ_MS));
    }
    return original(...args);
  };
  // The same function under readFile's overloads (it returns what the original returns).
  fs.promises.readFile = slowed as typeof original;
  // ES module imports of node:fs/promises see the change only after this.
  syncBuiltinESMExports();
  return () => {
    fs.promises.readFile = original;
    syncBuiltinESMExports();
  };
}
