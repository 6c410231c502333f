// Electric's offsets, chunk sizes and headers against a real Sluice and Postgres (docs/protocol.md
// §3.2–3.5, §5): a hand-written client following Electric's documented request sequence step by
// step, snapshot chunks numbered `0_0`, `0_1`, … then the live log, transactions larger than a
// chunk split across responses (the official client included), `electric-has-data`, a log written
// with the previous numbering served after an upgrade, and a transaction a crash left partly
// stored cut when the log is loaded. Every test ends with the oracle.
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Row } from '@electric-sql/client';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import {
  assertMatchesPostgres,
  openShape,
  parseColumn,
  unrefClientSaveTimers,
  waitForRows,
  withSluice,
} from '../support/shape-oracle.js';
import { startSluice, waitUntilLive, type RunningSluice } from '../support/sluice-server.js';
import { get, parseBody, toReply, type Reply, type WireMessage } from './shape-http-helpers.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const ITEMS = 'CREATE TABLE items (id int PRIMARY KEY, title text);';
const items = { table: 'items' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Schema = Record<string, { type: string; dims?: number }>;

/** What a client written from Electric's documentation keeps: rows by key, typed by the schema. */
class HandClient {
  readonly rows = new Map<string, Row>();
  #schema: Schema | undefined;

  /** Applies a 200's messages and returns them. */
  apply(reply: Reply): WireMessage[] {
    assert.equal(reply.status, 200, reply.text);
    const schema = reply.headers.get('electric-schema');
    if (schema !== null) this.#schema ??= JSON.parse(schema) as Schema;
    const messages = parseBody(reply);
    for (const { key, value, headers } of messages) {
      if (key === undefined || value === undefined) continue;
      const row: Row = {};
      for (const [name, text] of Object.entries(value)) {
        const column = this.#schema?.[name];
        assert.ok(column, `column ${name} is in electric-schema`);
        row[name] = parseColumn({ type: column.type, isArray: (column.dims ?? 0) > 0 }, text);
      }
      if (headers.operation === 'insert') this.rows.set(key, row);
      else if (headers.operation === 'update')
        this.rows.set(key, { ...this.rows.get(key), ...row });
      else if (headers.operation === 'delete') this.rows.delete(key);
    }
    return messages;
  }

  readonly current = (): Row[] => [...this.rows.values()];
}

const kinds = (messages: WireMessage[]) =>
  messages.map((m) => m.headers.operation ?? m.headers.control);

/** The offset of a replicated change, as Electric writes it: `<commit lsn>_<op>`. */
const changeOffset = (message: WireMessage | undefined) =>
  `${String(message?.headers.lsn)}_${String(message?.headers.op_position)}`;

/** Long-polls from `offset` until a response carries a change; returns that response. */
async function nextChange(url: string, handle: string, offset: string): Promise<Reply> {
  for (let from = offset, cursor = '', i = 0; i < 100; i++) {
    const reply = await get(url, { ...items, handle, offset: from, live: 'true', cursor });
    assert.equal(reply.status, 200, reply.text);
    if (parseBody(reply).some((m) => m.key !== undefined)) return reply;
    from = reply.headers.get('electric-offset') ?? '';
    cursor = reply.headers.get('electric-cursor') ?? '';
  }
  throw new Error('no change arrived');
}

describe("Electric's request sequence, by hand", () => {
  test('-1 → 0_0; 0_0 → up-to-date at 0_inf; live from 0_inf is held, then <lsn>_0; now on a new shape → 0_inf', async () => {
    const sql = `${ITEMS} INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c');`;
    await withSluice(
      postgres,
      sql,
      async ({ db, url }) => {
        const client = new HandClient();
        const first = await get(url, { ...items, offset: '-1' });
        const messages = client.apply(first);
        const handle = first.headers.get('electric-handle') ?? '';
        assert.equal(first.headers.get('electric-offset'), '0_0');
        assert.equal(first.headers.get('electric-up-to-date'), null);
        assert.equal(first.headers.get('etag'), `"${handle}:-1:0_0"`);
        assert.deepEqual(kinds(messages), ['insert', 'insert', 'insert', 'snapshot-end']);

        const second = await get(url, { ...items, offset: '0_0', handle });
        assert.deepEqual(kinds(client.apply(second)), ['up-to-date']);
        assert.equal(second.headers.get('electric-offset'), '0_inf');
        assert.equal(second.headers.get('electric-up-to-date'), '');
        assert.equal(second.headers.get('etag'), `"${handle}:0_0:0_inf"`);

        // Live from 0_inf: held while nothing changes, answered by the next commit.
        let answered = false;
        const live = get(url, { ...items, offset: '0_inf', handle, live: 'true', cursor: '' });
        void live.then(() => (answered = true));
        await sleep(500);
        assert.equal(answered, false, 'a live request at the end of the snapshot is held');
        await db.query(`INSERT INTO items VALUES (4, 'd')`);
        const change = await live;
        const changes = client.apply(change);
        assert.deepEqual(kinds(changes), ['insert', 'up-to-date']);
        assert.match(String(changes[0]?.headers.lsn), /^[1-9]\d*$/);
        assert.equal(change.headers.get('electric-offset'), `${String(changes[0]?.headers.lsn)}_0`);
        assert.equal(changeOffset(changes[0]), change.headers.get('electric-offset'));

        // offset=now on a shape nobody asked for yet: its end before any change is 0_inf.
        const filtered = { ...items, where: 'id >= 2' };
        const now = await get(url, { ...filtered, offset: 'now' });
        assert.equal(now.status, 200, now.text);
        assert.equal(now.headers.get('electric-offset'), '0_inf');
        assert.deepEqual(kinds(parseBody(now)), ['up-to-date']);
        assert.notEqual(now.headers.get('electric-handle'), handle);
        const fromNow = await get(url, {
          ...filtered,
          offset: '0_inf',
          handle: now.headers.get('electric-handle') ?? '',
        });
        assert.equal(fromNow.headers.get('electric-offset'), '0_inf');
        assert.deepEqual(kinds(parseBody(fromNow)), ['up-to-date']);

        await db.query(
          `UPDATE items SET title = 'b2' WHERE id = 2; DELETE FROM items WHERE id = 3`,
        );
        let offset = change.headers.get('electric-offset') ?? '';
        while (client.rows.size !== 3) {
          const reply = await nextChange(url, handle, offset);
          client.apply(reply);
          offset = reply.headers.get('electric-offset') ?? '';
        }
        await assertMatchesPostgres(db, items, client.current);
      },
      { longPollTimeoutMs: 20_000 },
    );
  });

  test('a multi-chunk snapshot steps 0_0, 0_1, … to its last chunk, then 0_inf, then the log', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, repeat('x', 60) FROM generate_series(1, 200) i;`;
    const chunkBytes = 2_000;
    await withSluice(
      postgres,
      sql,
      async ({ db, url }) => {
        const client = new HandClient();
        const first = await get(url, { ...items, offset: '-1' });
        const handle = first.headers.get('electric-handle') ?? '';
        const replies = [first];
        for (let offset = '0_0'; replies.at(-1)?.headers.get('electric-up-to-date') === null;) {
          const reply = await get(url, { ...items, offset, handle });
          replies.push(reply);
          offset = reply.headers.get('electric-offset') ?? '';
          assert.ok(replies.length < 1_000);
        }
        const bodies = replies.map((reply) => client.apply(reply));
        const offsets = replies.map((reply) => reply.headers.get('electric-offset'));
        const snapshotChunks = replies.length - 1;
        assert.ok(snapshotChunks >= 5, `${snapshotChunks} snapshot chunks`);
        assert.deepEqual(offsets, [
          ...Array.from({ length: snapshotChunks }, (_, chunk) => `0_${chunk}`),
          '0_inf',
        ]);
        // snapshot-end closes the last snapshot chunk; only the answer after it says up-to-date.
        for (const [i, body] of bodies.entries()) {
          const isLastChunk = i === snapshotChunks - 1;
          assert.equal(body.at(-1)?.headers.control === 'snapshot-end', isLastChunk, `chunk ${i}`);
          assert.equal(
            body.some((m) => m.headers.control === 'up-to-date'),
            i === snapshotChunks,
          );
          const largest = Math.max(...body.map((m) => JSON.stringify(m).length));
          assert.ok(Buffer.byteLength(replies[i]!.text) < chunkBytes + largest + 2, `chunk ${i}`);
        }
        assert.deepEqual(kinds(bodies.at(-1)!), ['up-to-date']);
        assert.equal(client.rows.size, 200);
        // A snapshot chunk's answer is the same whenever it is asked for (it is cacheable).
        const again = await get(url, { ...items, offset: '0_2', handle });
        assert.equal(again.text, replies[3]!.text);
        assert.equal(again.headers.get('etag'), `"${handle}:0_2:0_3"`);

        // Past the snapshot, the log: changes at <lsn>_<op>, and offset=now is their end.
        await db.query(
          `BEGIN; INSERT INTO items VALUES (201, 'new'); UPDATE items SET title = 'y' WHERE id = 1; COMMIT;`,
        );
        const change = await nextChange(url, handle, '0_inf');
        const changes = client.apply(change);
        assert.deepEqual(kinds(changes), ['insert', 'update', 'up-to-date']);
        assert.equal(changeOffset(changes[1]), change.headers.get('electric-offset'));
        assert.equal(changes[1]?.headers.op_position, 2);
        const now = await get(url, { ...items, offset: 'now' });
        assert.equal(now.headers.get('electric-offset'), change.headers.get('electric-offset'));
        // A client that read the last snapshot chunk before the change catches up on it.
        const lastChunk = `0_${snapshotChunks - 1}`;
        const catchUp = await get(url, { ...items, offset: lastChunk, handle });
        assert.equal(catchUp.text, change.text);
        await assertMatchesPostgres(db, items, client.current);
      },
      { chunkBytes, longPollTimeoutMs: 20_000 },
    );
  });
});

describe('electric-has-data', () => {
  test('true on answers from the log, false on offset=now and long-poll timeouts, absent on errors', async () => {
    await withSluice(
      postgres,
      `${ITEMS} INSERT INTO items VALUES (1, 'a');`,
      async ({ db, url }) => {
        const client = new HandClient();
        const hasData = (reply: Reply) => reply.headers.get('electric-has-data');
        const first = await get(url, { ...items, offset: '-1' });
        client.apply(first);
        assert.equal(hasData(first), 'true');
        const handle = first.headers.get('electric-handle') ?? '';
        const catchUp = await get(url, { ...items, offset: '0_0', handle });
        client.apply(catchUp);
        // As Electric: a catch-up is a read of the log even when it ends at once.
        assert.equal(hasData(catchUp), 'true');
        const etag = catchUp.headers.get('etag') ?? '';
        const revalidated = await get(
          url,
          { ...items, offset: '0_0', handle },
          { headers: { 'if-none-match': etag } },
        );
        assert.equal(revalidated.status, 304);
        assert.equal(hasData(revalidated), 'true', 'a 304 has the headers of its 200');

        const now = await get(url, { ...items, offset: 'now' });
        assert.equal(hasData(now), 'false');
        const idle = await get(url, {
          ...items,
          offset: '0_inf',
          handle,
          live: 'true',
          cursor: '',
        });
        assert.deepEqual(kinds(client.apply(idle)), ['up-to-date']);
        assert.equal(hasData(idle), 'false');

        await db.query(`INSERT INTO items VALUES (2, 'b')`);
        const change = await nextChange(url, handle, '0_inf');
        client.apply(change);
        assert.equal(hasData(change), 'true');

        const invalid = await get(url, { ...items, offset: 'x' });
        assert.equal(invalid.status, 400);
        assert.equal(hasData(invalid), null);
        const refetch = await get(url, { ...items, offset: '0_inf', handle: 'no-such-handle' });
        assert.equal(refetch.status, 409);
        assert.equal(hasData(refetch), null);
        const preflight = await toReply(
          await fetch(url, {
            method: 'OPTIONS',
            headers: { origin: 'https://app.example', 'access-control-request-method': 'GET' },
          }),
        );
        const exposed = await toReply(await fetch(`${url}?table=items&offset=-1`));
        assert.ok(preflight.status < 300);
        assert.match(
          exposed.headers.get('access-control-expose-headers') ?? '',
          /electric-has-data/,
        );
        await assertMatchesPostgres(db, items, client.current);
      },
      { longPollTimeoutMs: 1_000 },
    );
  });
});

/** Every response the official client receives: its URL, status, headers and body text. */
function recordingFetch(): { fetchClient: typeof fetch; seen: (Reply & { url: URL })[] } {
  const seen: (Reply & { url: URL })[] = [];
  const fetchClient: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : input.toString());
    const response = await fetch(input, init);
    seen.push({ url, ...(await toReply(response.clone())) });
    return response;
  };
  return { fetchClient, seen };
}

describe('the official client', () => {
  test('over a multi-chunk snapshot: it requests 0_0, 0_1, … and goes live from 0_inf', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, repeat('y', 80) FROM generate_series(1, 300) i;`;
    await withSluice(
      postgres,
      sql,
      async ({ db, open }) => {
        const { fetchClient, seen } = recordingFetch();
        const { shape } = open({ params: items, fetchClient });
        await waitForRows(shape, (rows) => rows.length === 300);
        await db.query(`INSERT INTO items VALUES (301, 'live')`);
        await waitForRows(shape, (rows) => rows.length === 301);
        const requested = seen.map((reply) => reply.url.searchParams.get('offset'));
        const firstLive = seen.findIndex((reply) => reply.url.searchParams.get('live') === 'true');
        assert.ok(firstLive > 5, `${firstLive} requests before going live`);
        assert.deepEqual(requested.slice(0, firstLive), [
          '-1',
          ...Array.from({ length: firstLive - 1 }, (_, chunk) => `0_${chunk}`),
        ]);
        assert.equal(requested[firstLive], '0_inf');
        assert.ok(seen.every((reply) => reply.status === 200));
        await assertMatchesPostgres(db, items, shape);
      },
      { chunkBytes: 3_000, longPollTimeoutMs: 20_000 },
    );
  });

  test('a 20 kB transaction with 10 kB chunks arrives in several responses, up-to-date after the last', async () => {
    const chunkBytes = 10_000;
    await withSluice(
      postgres,
      `${ITEMS} INSERT INTO items SELECT i, 'seed' FROM generate_series(1, 5) i;`,
      async ({ db, open }) => {
        const { fetchClient, seen } = recordingFetch();
        const { shape } = open({ params: items, fetchClient });
        // Up-to-date, not only 5 rows: the first answer never says up-to-date (protocol.md §3),
        // and the Shape's notice of the next one would be taken for the transaction's.
        await waitForRows(shape, (rows) => rows.length === 5 && shape.isUpToDate);
        // Part of the transaction is only ever seen while the Shape says it is syncing (the
        // official Shape notifies on the first change after up-to-date, as with Electric).
        const seenRows: { size: number; upToDate: boolean }[] = [];
        shape.subscribe(({ rows }) =>
          seenRows.push({ size: rows.length, upToDate: shape.isUpToDate }),
        );
        await db.query(
          `INSERT INTO items SELECT i, repeat(md5(i::text), 8) FROM generate_series(1001, 1080) i`,
        );
        await waitForRows(shape, (rows) => rows.length === 85);
        const carrying = seen
          .map((reply) => ({ reply, messages: parseBody(reply) }))
          .filter(({ messages }) => messages.some((m) => Number(m.value?.id) > 1000));
        const transactionBytes = carrying
          .flatMap(({ messages }) => messages.filter((m) => m.key !== undefined))
          .reduce((sum, m) => sum + JSON.stringify(m).length, 0);
        assert.ok(transactionBytes > 20_000, `${transactionBytes} bytes of changes`);
        assert.ok(carrying.length >= 2, `${carrying.length} responses carry the transaction`);
        const lsns = new Set(
          carrying.flatMap(({ messages }) =>
            messages.filter((m) => m.key !== undefined).map((m) => String(m.headers.lsn)),
          ),
        );
        assert.equal(lsns.size, 1, 'one transaction');
        for (const { reply, messages } of carrying) {
          const largest = Math.max(...messages.map((m) => JSON.stringify(m).length));
          const bytes = Buffer.byteLength(reply.text);
          assert.ok(bytes < chunkBytes + largest + 2, `a response of ${bytes} bytes`);
          // Only the response that reaches the end of the transaction says up-to-date.
          const isLast = reply === carrying.at(-1)?.reply;
          assert.equal(reply.headers.has('electric-up-to-date'), isLast);
          assert.equal(
            messages.some((m) => m.headers.last === true),
            isLast,
          );
        }
        for (const { size, upToDate } of seenRows) {
          if (upToDate) assert.equal(size, 85, 'up-to-date only with the whole transaction');
        }
        assert.deepEqual(seenRows.at(-1), { size: 85, upToDate: true });
        await assertMatchesPostgres(db, items, shape);
      },
      { chunkBytes, longPollTimeoutMs: 20_000 },
    );
  });
});

/** A chunk file of a shape log as lines, with whether it ends with the seal line. */
interface ChunkFile {
  name: string;
  lines: string[];
  sealed: boolean;
}

async function readChunkFiles(dir: string): Promise<ChunkFile[]> {
  const names = (await readdir(dir)).filter((name) => /^chunk-\d+\.log$/.test(name)).sort();
  return Promise.all(
    names.map(async (name) => {
      const lines = (await readFile(path.join(dir, name), 'utf8')).split('\n').slice(0, -1);
      const sealed = lines.at(-1) === '#sealed';
      return { name, lines: sealed ? lines.slice(0, -1) : lines, sealed };
    }),
  );
}

const offsetOf = (line: string) => line.slice(0, line.indexOf(' '));

/**
 * A database set up with `sql`, a Sluice on it, then a second Sluice on the same storage once
 * `restart` is called (the first one closed, its shape logs kept); everything is torn down after.
 */
async function withRestart(
  sql: string,
  overrides: Parameters<typeof startSluice>[1],
  body: (db: TestDatabase, first: RunningSluice, restart: () => Promise<string>) => Promise<void>,
): Promise<void> {
  const db = await postgres.createDatabase();
  const servers: RunningSluice[] = [];
  const closed = new Set<RunningSluice>();
  try {
    await db.query(sql);
    const first = await startSluice(db, overrides);
    servers.push(first);
    await waitUntilLive(first.baseUrl);
    await body(db, first, async () => {
      await first.close({ keepStorage: true });
      closed.add(first);
      const second = await startSluice(db, { ...overrides, storageDir: first.storageDir });
      servers.push(second);
      await waitUntilLive(second.baseUrl);
      return `${second.baseUrl}/v1/shape`;
    });
  } finally {
    for (const server of servers.reverse()) {
      if (!closed.has(server)) await server.close();
    }
    await db.drop();
  }
}

/** Reads a shape by hand from -1 until up-to-date; returns each response's offset. */
async function readAll(
  url: string,
  client: HandClient,
): Promise<{ handle: string; offsets: string[] }> {
  const offsets: string[] = [];
  let handle = '';
  for (let offset = '-1'; ;) {
    const reply = await get(url, { ...items, offset, ...(handle ? { handle } : {}) });
    client.apply(reply);
    handle = reply.headers.get('electric-handle') ?? '';
    offset = reply.headers.get('electric-offset') ?? '';
    offsets.push(offset);
    if (reply.headers.has('electric-up-to-date')) return { handle, offsets };
    assert.ok(offsets.length < 1_000);
  }
}

describe('stored logs', () => {
  test('a log written with the previous numbering (rows 0_0…0_n, snapshot-end at 0_inf) is served after an upgrade', async () => {
    const sql = `${ITEMS} INSERT INTO items SELECT i, repeat('z', 60) FROM generate_series(1, 40) i;`;
    await withRestart(
      sql,
      { chunkBytes: 1_500, longPollTimeoutMs: 20_000 },
      async (db, first, restart) => {
        const firstUrl = `${first.baseUrl}/v1/shape`;
        const { handle } = await readAll(firstUrl, new HandClient());
        await db.query(
          `BEGIN; INSERT INTO items VALUES (41, 'a'); DELETE FROM items WHERE id = 2; COMMIT;`,
        );
        await nextChange(firstUrl, handle, '0_inf');

        // Rewrite the log as the previous version wrote it: snapshot rows numbered through the
        // whole snapshot, snapshot-end at 0_inf, each chunk and the index as they were.
        const dir = path.join(first.storageDir, 'shapes', handle);
        await first.close({ keepStorage: true });
        let row = 0;
        const files = await readChunkFiles(dir);
        const index: object[] = [];
        for (const file of files) {
          file.lines = file.lines.map((line) => {
            if (!line.startsWith('0_')) return line;
            const json = line.slice(line.indexOf(' ') + 1);
            return `${json.includes('"snapshot-end"') ? '0_inf' : `0_${row++}`} ${json}`;
          });
          const text =
            file.lines.map((line) => `${line}\n`).join('') + (file.sealed ? '#sealed\n' : '');
          await writeFile(path.join(dir, file.name), text);
          if (file.sealed) {
            index.push({
              number: Number(/\d+/.exec(file.name)![0]),
              first: offsetOf(file.lines[0]!),
              last: offsetOf(file.lines.at(-1)!),
              count: file.lines.length,
              bytes: Buffer.byteLength(text),
            });
          }
        }
        await writeFile(
          path.join(dir, 'chunks.json'),
          JSON.stringify({ version: 1, chunks: index }),
        );
        const oldEnds = files.map((file) => offsetOf(file.lines.at(-1)!));
        const snapshotFiles = oldEnds.indexOf('0_inf') + 1;
        assert.ok(snapshotFiles >= 3, `${snapshotFiles} snapshot chunks`);
        assert.notEqual(oldEnds[0], '0_0');

        const url = await restart();
        const client = new HandClient();
        const walked = await readAll(url, client);
        assert.equal(walked.handle, handle, 'the stored shape is served, not made anew');
        assert.deepEqual(walked.offsets, oldEnds);
        // A client that stopped inside the old snapshot, or at its end, resumes where it was.
        const resumed = await get(url, { ...items, offset: oldEnds[0]!, handle });
        assert.equal(resumed.headers.get('electric-offset'), oldEnds[1]);
        const afterSnapshot = await get(url, { ...items, offset: '0_inf', handle });
        assert.equal(afterSnapshot.headers.get('electric-offset'), oldEnds.at(-1));
        assert.ok(afterSnapshot.headers.has('electric-up-to-date'));

        await db.query(`UPDATE items SET title = 'new' WHERE id = 3`);
        client.apply(await nextChange(url, handle, oldEnds.at(-1)!));
        await assertMatchesPostgres(db, items, client.current);
        const official = openShape(url, { params: items });
        try {
          await assertMatchesPostgres(db, items, official.shape);
        } finally {
          official.close();
        }
      },
    );
  });

  test('a log ending inside a transaction (a crash between its chunk files) is cut when loaded', async () => {
    const sql = `${ITEMS} INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c');`;
    await withRestart(sql, { longPollTimeoutMs: 20_000 }, async (db, first, restart) => {
      const firstUrl = `${first.baseUrl}/v1/shape`;
      const { handle } = await readAll(firstUrl, new HandClient());
      await db.query(`INSERT INTO items VALUES (4, 'd')`);
      const change = await nextChange(firstUrl, handle, '0_inf');
      const end = change.headers.get('electric-offset') ?? '';

      // The first changes of a later transaction, durable without its last one: what a crash
      // between two chunk files of that transaction leaves. Its LSN is far ahead, so a shape
      // that kept it would drop every real commit after the restart as a replay.
      const dir = path.join(first.storageDir, 'shapes', handle);
      await first.close({ keepStorage: true });
      const torn = BigInt(end.split('_')[0]!) + 2n ** 36n;
      const lines = [900, 901].map((id, i) => {
        const message = {
          key: `"public"."items"/"${id}"`,
          value: { id: String(id), title: 'torn' },
          headers: {
            operation: 'insert',
            relation: ['public', 'items'],
            lsn: String(torn),
            op_position: i * 2,
            txids: [1],
          },
        };
        return `${torn}_${i * 2} ${JSON.stringify(message)}\n`;
      });
      const files = await readChunkFiles(dir);
      const last = files.at(-1)!;
      assert.equal(last.sealed, false, 'the change went into the open chunk');
      await writeFile(path.join(dir, last.name), lines.join(''), { flag: 'a' });

      const url = await restart();
      const client = new HandClient();
      const walked = await readAll(url, client);
      assert.equal(walked.handle, handle);
      assert.equal(walked.offsets.at(-1), end, 'the log ends where the last whole transaction did');
      await db.query(`INSERT INTO items VALUES (5, 'e')`);
      client.apply(await nextChange(url, handle, end));
      await assertMatchesPostgres(db, items, client.current);
    });
  });
});
