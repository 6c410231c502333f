// The WebSocket live transport against a real Sluice and Postgres (docs/protocol.md §12), with
// raw `ws` clients: the status frame at open, subscriptions continuing exactly after the offset
// an HTTP sync ended at, batches equal to what HTTP answers at the same offsets, resuming from any
// offset (nothing skipped, nothing twice), must-refetch where HTTP says 409, error frames with
// the codes GET gets, and many shapes on one socket. Every data test ends with the oracle.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import type { WireMessage, WsMessagesFrame, WsMustRefetchFrame } from '@sluice/protocol';
import { metric } from '../support/metrics.js';
import { fetchStatus } from '../support/server-status.js';
import { assertMatchesPostgres, withSluice } from '../support/shape-oracle.js';
import { get } from './shape-http-helpers.js';
import {
  RowsByKey,
  WsTestClient,
  changesOf,
  isUpToDate,
  subscribeFrame,
  syncOverHttp,
} from './ws-helpers.js';

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

const SQL = `CREATE TABLE items (id int PRIMARY KEY, title text);
  INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 20) i;`;
const ITEMS = { table: 'items' };
const itemRows = (rows: RowsByKey) => () =>
  [...rows.rows.values()].map((row) => ({ id: Number(row.id), title: row.title ?? null }));

/** Reads frames for `id` into `rows` until one ends with up-to-date at or after `offset`. */
async function readUntilUpToDate(
  client: WsTestClient,
  id: string,
  rows: RowsByKey,
  done: (frame: WsMessagesFrame) => boolean,
): Promise<WsMessagesFrame[]> {
  const frames: WsMessagesFrame[] = [];
  for (;;) {
    const frame = await client.nextMessages(id);
    rows.apply(frame.messages);
    frames.push(frame);
    if (isUpToDate(frame) && done(frame)) return frames;
  }
}

describe('WebSocket live transport', () => {
  test('a status frame at open, the same document as GET /v1/status', async () => {
    await withSluice(postgres, SQL, async ({ sluice }) => {
      const client = await WsTestClient.open(sluice.baseUrl);
      try {
        const frame = await client.next((f) => f.type === 'status', 'status at open');
        assert.equal(client.frames[0], frame, 'the first frame');
        assert.ok(frame.type === 'status');
        const document = await fetchStatus(sluice.baseUrl);
        assert.equal(frame.status.status, 'live');
        assert.deepEqual(Object.keys(frame.status).sort(), Object.keys(document).sort());
        assert.equal(frame.status.replication.slot, document.replication.slot);
      } finally {
        client.close();
      }
    });
  });

  test('continues exactly after the HTTP sync: batches equal the HTTP answers, rows equal SELECT', async () => {
    await withSluice(postgres, SQL, async ({ db, sluice, url }) => {
      const sync = await syncOverHttp(url, ITEMS);
      const client = await WsTestClient.open(sluice.baseUrl);
      try {
        client.send(subscribeFrame('a', ITEMS, sync.handle, sync.offset));
        const first = await client.nextMessages('a');
        // At once, with nothing new: up-to-date alone at the same offset, with the schema.
        assert.equal(first.handle, sync.handle);
        assert.equal(first.offset, sync.offset);
        assert.deepEqual(first.schema, sync.schema);
        assert.equal(first.messages.length, 1);
        assert.ok(isUpToDate(first));

        await db.query(`INSERT INTO items VALUES (21, 'new')`);
        await db.query(`UPDATE items SET title = 'changed' WHERE id = 3`);
        await db.query(`BEGIN; DELETE FROM items WHERE id = 4;
          INSERT INTO items VALUES (22, 'two'), (23, 'three'); COMMIT;`);
        await db.query(`UPDATE items SET id = 100 WHERE id = 5`);

        const rows = sync.rows;
        const frames = await readUntilUpToDate(client, 'a', rows, () =>
          rows.rows.has('"public"."items"/"100"'),
        );
        for (const frame of frames) {
          assert.equal(frame.handle, sync.handle);
          assert.equal(frame.schema, undefined, 'only the first frame has the schema');
        }
        // The same messages, in the same order, as HTTP catch-up reads from the same offset
        // (whose batches may be cut elsewhere: each read takes what is durable when it runs).
        const overHttp: WireMessage[] = [];
        let offset = sync.offset;
        for (;;) {
          const reply = await get(url, { ...ITEMS, handle: sync.handle, offset });
          assert.equal(reply.status, 200);
          overHttp.push(...(JSON.parse(reply.text) as WireMessage[]).filter((m) => 'key' in m));
          offset = reply.headers.get('electric-offset') ?? '';
          if (reply.headers.has('electric-up-to-date')) break;
        }
        assert.deepEqual(frames.flatMap(changesOf), overHttp);
        assert.equal(frames.at(-1)?.offset, offset, 'ends where HTTP ends');
        await assertMatchesPostgres(db, ITEMS, itemRows(rows));
      } finally {
        client.close();
      }
    });
  });

  test('resuming from any offset it was given: nothing skipped, nothing twice', async () => {
    await withSluice(postgres, SQL, async ({ db, sluice, url }) => {
      const sync = await syncOverHttp(url, ITEMS);
      const client = await WsTestClient.open(sluice.baseUrl);
      try {
        client.send(subscribeFrame('whole', ITEMS, sync.handle, sync.offset));
        await client.nextMessages('whole');
        for (let i = 0; i < 6; i++) {
          await db.query(`BEGIN; UPDATE items SET title = 'round ${i}' WHERE id <= ${i + 2};
            INSERT INTO items VALUES (${100 + i}, 'r${i}'); COMMIT;`);
        }
        const seen = new RowsByKey();
        const frames = await readUntilUpToDate(client, 'whole', seen, () =>
          seen.rows.has('"public"."items"/"105"'),
        );
        const all = frames.flatMap(changesOf);
        assert.equal(all.length, 3 + 4 + 5 + 6 + 7 + 8);
        // Resume from each offset a frame ended at: exactly the changes after it, once each.
        for (const [index, frame] of frames.entries()) {
          const id = `resume-${index}`;
          client.send(subscribeFrame(id, ITEMS, sync.handle, frame.offset));
          const expected = frames.slice(index + 1).flatMap(changesOf);
          const got: WireMessage[] = [];
          const rows = new RowsByKey();
          for (;;) {
            const next = await client.nextMessages(id);
            got.push(...changesOf(next));
            rows.apply(next.messages);
            if (isUpToDate(next) && got.length >= expected.length) break;
          }
          assert.deepEqual(got, expected, `after ${frame.offset}`);
          client.send({ type: 'unsubscribe', id });
        }
        const rows = sync.rows;
        rows.apply(all);
        await assertMatchesPostgres(db, ITEMS, itemRows(rows));
      } finally {
        client.close();
      }
    });
  });

  test("a handle that is not the shape's gets must-refetch naming the handle GET's 409 names", async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ db, sluice, url }) => {
        const sync = await syncOverHttp(url, ITEMS);
        const client = await WsTestClient.open(sluice.baseUrl);
        try {
          const stale = 'deadbeef-1234';
          client.send(subscribeFrame('old', ITEMS, stale, sync.offset));
          const frame = await client.next<WsMustRefetchFrame>(
            (f) => f.type === 'must-refetch' && f.id === 'old',
            'must-refetch',
          );
          const reply = await get(url, { ...ITEMS, handle: stale, offset: sync.offset });
          assert.equal(reply.status, 409);
          assert.equal(frame.handle, reply.headers.get('electric-handle'));
          assert.equal(frame.handle, sync.handle);

          // A subscription on a shape that is then deleted is told to refetch, at once.
          client.send(subscribeFrame('live', ITEMS, sync.handle, sync.offset));
          await client.nextMessages('live');
          const deleted = await fetch(`${url}?table=items&handle=${sync.handle}`, {
            method: 'DELETE',
          });
          assert.equal(deleted.status, 202);
          const refetch = await client.next<WsMustRefetchFrame>(
            (f) => f.type === 'must-refetch' && f.id === 'live',
            'must-refetch after delete',
          );
          assert.notEqual(refetch.handle, sync.handle);
          // Starting over from that handle, over HTTP then the socket, reaches SELECT again.
          await db.query(`INSERT INTO items VALUES (50, 'after')`);
          const again = await syncOverHttp(url, ITEMS);
          assert.equal(again.handle, refetch.handle);
          client.send(subscribeFrame('again', ITEMS, again.handle, again.offset));
          again.rows.apply((await client.nextMessages('again')).messages);
          await db.query(`INSERT INTO items VALUES (51, 'later')`);
          await readUntilUpToDate(client, 'again', again.rows, () => again.rows.rows.size === 22);
          await assertMatchesPostgres(db, ITEMS, itemRows(again.rows));
        } finally {
          client.close();
        }
      },
      { enableShapeDelete: true },
    );
  });

  test('error frames carry the status, code and errors GET gets with the same parameters', async () => {
    await withSluice(postgres, SQL, async ({ sluice, url }) => {
      const sync = await syncOverHttp(url, ITEMS);
      const client = await WsTestClient.open(sluice.baseUrl);
      const past = `${BigInt(sync.offset.split('_')[0]!) + 1_000_000n}_0`;
      const cases: {
        name: string;
        params: Record<string, string>;
        handle?: string;
        offset: string;
      }[] = [
        { name: 'missing table', params: {}, offset: 'now' },
        { name: 'unknown table', params: { table: 'nope' }, offset: 'now' },
        { name: 'bad identifier', params: { table: 'a b c' }, offset: 'now' },
        { name: 'bad where', params: { table: 'items', where: 'id >' }, offset: 'now' },
        { name: 'unknown column', params: { table: 'items', where: 'nope = 1' }, offset: 'now' },
        { name: 'bad columns', params: { table: 'items', columns: 'title' }, offset: 'now' },
        { name: 'bad replica', params: { table: 'items', replica: 'half' }, offset: 'now' },
        { name: 'bad offset', params: ITEMS, handle: sync.handle, offset: 'soon' },
        { name: 'offset without handle', params: ITEMS, offset: sync.offset },
        { name: 'offset past the end', params: ITEMS, handle: sync.handle, offset: past },
      ];
      try {
        for (const [index, c] of cases.entries()) {
          const id = `e${index}`;
          client.send(subscribeFrame(id, c.params as { table: string }, c.handle, c.offset));
          const frame = await client.nextError(id);
          const query = {
            ...c.params,
            offset: c.offset,
            ...(c.handle ? { handle: c.handle } : {}),
          };
          const reply = await get(url, query);
          assert.equal(frame.status, reply.status, c.name);
          const body = JSON.parse(reply.text) as { errors?: unknown; code?: string };
          assert.deepEqual(frame.errors, body.errors, c.name);
          assert.match(frame.code, /^SLUICE_ERR_/, c.name);
        }
        // The socket and a subscription made before all that are still fine.
        client.send(subscribeFrame('fine', ITEMS, sync.handle, sync.offset));
        assert.ok(isUpToDate(await client.nextMessages('fine')));
        assert.equal(client.closeCode, undefined);
      } finally {
        client.close();
      }
    });
  });

  test('fifty sockets following one shape all get the same changes (one shared read per flush)', async () => {
    await withSluice(postgres, SQL, async ({ db, sluice, url }) => {
      const sync = await syncOverHttp(url, ITEMS);
      const clients = await Promise.all(
        Array.from({ length: 50 }, () => WsTestClient.open(sluice.baseUrl)),
      );
      try {
        for (const client of clients) {
          client.send(subscribeFrame('one', ITEMS, sync.handle, sync.offset));
          await client.nextMessages('one');
        }
        for (let i = 0; i < 5; i++) {
          await db.query(`BEGIN; INSERT INTO items VALUES (${100 + i}, 'fan ${i}');
            UPDATE items SET title = 'fan ${i}' WHERE id = ${i + 1}; COMMIT;`);
        }
        const received: WireMessage[][] = [];
        for (const client of clients) {
          const rows = new RowsByKey();
          const frames = await readUntilUpToDate(client, 'one', rows, () =>
            rows.rows.has('"public"."items"/"104"'),
          );
          received.push(frames.flatMap(changesOf));
        }
        for (const changes of received) assert.deepEqual(changes, received[0]);
        assert.equal(received[0]?.length, 10);
        // The fan-out counts its frames once per pass: the count is still one per frame sent.
        const got = clients.reduce(
          (sum, client) => sum + client.frames.filter((frame) => frame.type === 'messages').length,
          0,
        );
        const sent = await metric(sluice.baseUrl, 'sluice_ws_frames_sent_total', [
          'type="messages"',
        ]);
        assert.equal(sent, got);
        sync.rows.apply(received[0]);
        await assertMatchesPostgres(db, ITEMS, itemRows(sync.rows));
      } finally {
        for (const client of clients) client.close();
      }
    });
  });

  test('ten shapes on one socket each get their own changes; rows equal SELECT', async () => {
    const tables = Array.from({ length: 10 }, (_, i) => `t${i}`);
    const sql = tables
      .map(
        (t) =>
          `CREATE TABLE ${t} (id int PRIMARY KEY, title text); INSERT INTO ${t} VALUES (1, '${t}');`,
      )
      .join('\n');
    await withSluice(postgres, sql, async ({ db, sluice, url }) => {
      const client = await WsTestClient.open(sluice.baseUrl);
      try {
        const syncs = await Promise.all(tables.map((table) => syncOverHttp(url, { table })));
        for (const [i, table] of tables.entries()) {
          client.send(subscribeFrame(table, { table }, syncs[i]!.handle, syncs[i]!.offset));
        }
        for (const [i, table] of tables.entries()) {
          syncs[i]!.rows.apply((await client.nextMessages(table)).messages);
        }
        for (const [i, table] of tables.entries()) {
          await db.query(
            `INSERT INTO ${table} SELECT g, '${table}' FROM generate_series(2, ${i + 2}) g`,
          );
        }
        for (const [i, table] of tables.entries()) {
          const rows = syncs[i]!.rows;
          await readUntilUpToDate(client, table, rows, () => rows.rows.size === i + 2);
          await assertMatchesPostgres(db, { table }, itemRows(rows));
        }
      } finally {
        client.close();
      }
    });
  });
});
