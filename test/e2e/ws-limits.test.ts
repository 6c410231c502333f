// What `/v1/ws` does with hostile and excessive input, and its limits (docs/protocol.md §12,
// docs/security.md): a table of bad frames with what each gets (an error frame, never a crash,
// never the end of the other subscriptions), frames over the size limit closed with 1009, the
// subscriptions-per-socket and sockets-per-process limits, the secret, the Origin allow-list,
// heartbeats, shutdown with 1001, backpressure (4000) and the metrics that count all of it.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startPostgres, type TestPostgres } from '@sluice/harness';
import type { ErrorCode, WireMessage, WsErrorFrame, WsServerFrame } from '@sluice/protocol';
import { metric } from '../support/metrics.js';
import { assertMatchesPostgres, withSluice } from '../support/shape-oracle.js';
import {
  RowsByKey,
  WsTestClient,
  isUpToDate,
  refusedUpgrade,
  sleep,
  subscribeFrame,
  syncOverHttp,
  waitFor,
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

const MAX_FRAME = 4_096;
const MAX_SUBSCRIPTIONS = 5;

interface HostileCase {
  name: string;
  /** Sent as a text frame (a string as is, anything else as JSON), or as a binary frame. */
  frame: string | object | { binary: Buffer };
  /** What it gets: an error frame with this code, for this id (undefined: none named). */
  expect: { code: ErrorCode; id?: string; field: string } | 'nothing';
}

const deep = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

/** THE TABLE (docs/protocol.md §12, "Bad input"): each hostile frame and what it gets. */
const HOSTILE: HostileCase[] = [
  {
    name: 'not JSON',
    frame: '{"type":',
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', field: 'frame' },
  },
  {
    name: 'a JSON array',
    frame: '[1,2,3]',
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', field: 'frame' },
  },
  {
    name: 'JSON null',
    frame: 'null',
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', field: 'frame' },
  },
  {
    name: 'an empty frame',
    frame: '',
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', field: 'frame' },
  },
  {
    name: 'deeply nested JSON (2,000 levels)',
    frame: deep(2_000),
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', field: 'frame' },
  },
  {
    name: 'deeply nested in a field',
    frame: `{"type":"subscribe","id":"nest","offset":"now","params":{"table":${deep(1_900)}}}`,
    expect: { code: 'SLUICE_ERR_SHAPE_INVALID', id: 'nest', field: 'table' },
  },
  {
    name: 'a binary frame',
    frame: { binary: Buffer.from([1, 2, 3]) },
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', field: 'frame' },
  },
  {
    name: 'no id',
    frame: { type: 'subscribe', params: ITEMS, offset: 'now' },
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', field: 'id' },
  },
  {
    name: 'id a number',
    frame: { type: 'subscribe', id: 7, params: ITEMS, offset: 'now' },
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', field: 'id' },
  },
  {
    name: 'id of 65 characters',
    frame: { type: 'subscribe', id: 'x'.repeat(65), params: ITEMS, offset: 'now' },
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', field: 'id' },
  },
  {
    name: 'unknown type',
    frame: { type: 'hello', id: 'u' },
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', id: 'u', field: 'type' },
  },
  {
    name: 'a server frame type',
    frame: { type: 'messages', id: 'm', messages: [] },
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', id: 'm', field: 'type' },
  },
  {
    name: 'params not an object',
    frame: { type: 'subscribe', id: 'p', params: 'items', offset: 'now' },
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', id: 'p', field: 'params' },
  },
  {
    name: 'table a number',
    frame: { type: 'subscribe', id: 't', params: { table: 1 }, offset: 'now' },
    expect: { code: 'SLUICE_ERR_SHAPE_INVALID', id: 't', field: 'table' },
  },
  {
    name: 'offset a number',
    frame: { type: 'subscribe', id: 'o', params: ITEMS, offset: 0 },
    expect: { code: 'SLUICE_ERR_SHAPE_INVALID', id: 'o', field: 'offset' },
  },
  {
    name: 'where params of the wrong type',
    frame: {
      type: 'subscribe',
      id: 'w',
      params: { table: 'items', where: 'id = $1', params: [1] },
      offset: 'now',
    },
    expect: { code: 'SLUICE_ERR_SHAPE_INVALID', id: 'w', field: 'params' },
  },
  {
    name: 'a field no shape has (live)',
    frame: { type: 'subscribe', id: 'l', params: { table: 'items', live: 'true' }, offset: 'now' },
    expect: { code: 'SLUICE_ERR_SHAPE_INVALID', id: 'l', field: 'live' },
  },
  {
    name: 'offset -1 (a snapshot)',
    frame: { type: 'subscribe', id: 's', params: ITEMS, offset: '-1' },
    expect: { code: 'SLUICE_ERR_SHAPE_INVALID', id: 's', field: 'offset' },
  },
  {
    name: 'a where clause that is not SQL',
    frame: {
      type: 'subscribe',
      id: 'q',
      params: { table: 'items', where: '1; DROP TABLE items' },
      offset: 'now',
    },
    expect: { code: 'SLUICE_ERR_SHAPE_INVALID', id: 'q', field: 'where' },
  },
  {
    name: 'unsubscribe of an unknown id',
    frame: { type: 'unsubscribe', id: 'never' },
    expect: 'nothing',
  },
  {
    name: 'unsubscribe with no id',
    frame: { type: 'unsubscribe' },
    expect: { code: 'SLUICE_ERR_WS_FRAME_INVALID', field: 'id' },
  },
];

function send(client: WsTestClient, frame: HostileCase['frame']): void {
  if (typeof frame === 'string') client.sendText(frame);
  else if ('binary' in frame && Buffer.isBuffer(frame.binary))
    client.socket.send(frame.binary, { binary: true });
  else client.send(frame as Record<string, unknown>);
}

describe('WebSocket limits and bad input', () => {
  test('hostile frames: each gets its error frame; the socket and its subscription go on', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ db, sluice, url }) => {
        const sync = await syncOverHttp(url, ITEMS);
        const client = await WsTestClient.open(sluice.baseUrl);
        try {
          client.send(subscribeFrame('keep', ITEMS, sync.handle, sync.offset));
          sync.rows.apply((await client.nextMessages('keep')).messages);
          for (const [index, c] of HOSTILE.entries()) {
            const start = client.frames.length;
            send(client, c.frame);
            // A subscribe's refusal may come after a lookup: wait for it by its id. Then a probe:
            // whatever else the case got comes before the probe's answer.
            if (c.expect !== 'nothing' && c.expect.id !== undefined) {
              await client.nextError(c.expect.id);
            }
            const probe = `probe-${index}`;
            client.send({ type: 'bogus', id: probe });
            await client.nextError(probe);
            const frames = client.frames
              .slice(start)
              .filter((f) => !(f.type === 'error' && f.id === probe));
            if (c.expect === 'nothing') {
              assert.deepEqual(frames, [], c.name);
              continue;
            }
            assert.equal(frames.length, 1, `${c.name}: one error frame`);
            const error = frames[0] as WsErrorFrame;
            assert.equal(error.code, c.expect.code, c.name);
            assert.equal(error.status, 400, c.name);
            assert.equal(error.id, c.expect.id, c.name);
            assert.ok(
              error.errors && c.expect.field in error.errors,
              `${c.name}: names ${c.expect.field}`,
            );
          }
          // Thousands of subscribes: the first ones up to the limit stand, every other one is
          // refused with its own error frame.
          const ids = Array.from({ length: 2_000 }, (_, i) => `many-${i}`);
          for (const id of ids) client.send(subscribeFrame(id, ITEMS, sync.handle, sync.offset));
          const answers = new Map<string, WsServerFrame>();
          await waitFor('an answer to every subscribe', () => {
            for (const frame of client.frames) {
              if ('id' in frame && frame.id?.startsWith('many-') && !answers.has(frame.id))
                answers.set(frame.id, frame);
            }
            return answers.size === ids.length;
          });
          const accepted = [...answers.values()].filter((f) => f.type === 'messages');
          const refused = [...answers.values()].filter(
            (f) => f.type === 'error' && f.code === 'SLUICE_ERR_WS_TOO_MANY_SUBSCRIPTIONS',
          );
          assert.equal(accepted.length, MAX_SUBSCRIPTIONS - 1, 'up to the limit (one is "keep")');
          assert.equal(refused.length, ids.length - accepted.length);
          assert.equal(await metric(sluice.baseUrl, 'sluice_ws_subscriptions'), MAX_SUBSCRIPTIONS);

          // Through all that, the first subscription kept following its shape.
          await db.query(`INSERT INTO items VALUES (99, 'still here')`);
          for (;;) {
            const frame = await client.nextMessages('keep');
            sync.rows.apply(frame.messages);
            if (isUpToDate(frame) && sync.rows.rows.size === 21) break;
          }
          await assertMatchesPostgres(db, ITEMS, itemRows(sync.rows));
          assert.equal(client.closeCode, undefined, 'the socket stayed open');

          // A frame over the size limit closes the socket with 1009; the server goes on.
          client.sendText(
            JSON.stringify({ type: 'subscribe', id: 'big', pad: 'x'.repeat(MAX_FRAME) }),
          );
          assert.equal(await client.closed, 1009);
          await waitForMetric(sluice.baseUrl, 'sluice_ws_sockets_closed_total', 1, [
            'reason="frame-too-big"',
          ]);
          await waitForMetric(sluice.baseUrl, 'sluice_ws_subscriptions', 0);
          const again = await WsTestClient.open(sluice.baseUrl);
          await again.next((f) => f.type === 'status', 'status');
          again.close();
        } finally {
          client.close();
        }
      },
      { wsMaxFrameBytes: MAX_FRAME, wsMaxSubscriptions: MAX_SUBSCRIPTIONS },
    );
  });

  test('sockets per process: the one over the limit is refused 503, with retry-after', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ sluice }) => {
        const first = await WsTestClient.open(sluice.baseUrl);
        const second = await WsTestClient.open(sluice.baseUrl);
        const refused = await refusedUpgrade(sluice.baseUrl);
        assert.equal(refused.status, 503);
        assert.equal(refused.headers['retry-after'], '1');
        assert.equal((JSON.parse(refused.body) as { code: string }).code, 'SLUICE_ERR_OVERLOADED');
        assert.equal(
          await metric(sluice.baseUrl, 'sluice_ws_upgrades_refused_total', [
            'reason="socket-limit"',
          ]),
          1,
        );
        first.close();
        await first.closed;
        await waitForMetric(sluice.baseUrl, 'sluice_ws_sockets_open', 1);
        const third = await WsTestClient.open(sluice.baseUrl);
        third.close();
        second.close();
      },
      { wsMaxSockets: 2 },
    );
  });

  test('the secret, as for /v1/shape: as secret= or a bearer header, else 401', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ sluice }) => {
        assert.equal((await refusedUpgrade(sluice.baseUrl)).status, 401);
        assert.equal(
          (await refusedUpgrade(sluice.baseUrl, { query: { secret: 'wrong' } })).status,
          401,
        );
        const withQuery = await WsTestClient.open(sluice.baseUrl, { query: { secret: 's3cret' } });
        const withHeader = await WsTestClient.open(sluice.baseUrl, {
          headers: { Authorization: 'Bearer s3cret' },
        });
        withQuery.close();
        withHeader.close();
        assert.equal(
          await metric(sluice.baseUrl, 'sluice_ws_upgrades_refused_total', [
            'reason="unauthorized"',
          ]),
          2,
        );
      },
      { secret: 's3cret' },
    );
  });

  test('the Origin allow-list: another origin is refused 403; no Origin (not a browser) is let in', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ sluice }) => {
        const refused = await refusedUpgrade(sluice.baseUrl, {
          headers: { Origin: 'https://evil.example' },
        });
        assert.equal(refused.status, 403);
        // Without an upgrade, the path says what it is.
        const plain = await fetch(`${sluice.baseUrl}/v1/ws`);
        assert.equal(plain.status, 426);
        assert.equal(plain.headers.get('upgrade'), 'websocket');
        const good = await WsTestClient.open(sluice.baseUrl, {
          headers: { Origin: 'https://app.example' },
        });
        const none = await WsTestClient.open(sluice.baseUrl);
        good.close();
        none.close();
      },
      { wsAllowedOrigins: ['https://app.example', 'http://localhost:5173'] },
    );
  });

  test('an upgrade to another path or protocol is answered as the plain request it is', async () => {
    await withSluice(postgres, SQL, async ({ db, sluice }) => {
      // curl --http2 on http:// asks for h2c this way; Sluice answers in HTTP/1.1.
      const h2c = { Connection: 'Upgrade, HTTP2-Settings', Upgrade: 'h2c', 'HTTP2-Settings': '' };
      const shape = await plainRequest(`${sluice.baseUrl}/v1/shape?table=items&offset=-1`, h2c);
      assert.equal(shape.status, 200);
      const rows = new RowsByKey();
      rows.apply(JSON.parse(shape.body) as WireMessage[]);
      await assertMatchesPostgres(db, ITEMS, itemRows(rows));
      const status = await plainRequest(`${sluice.baseUrl}/v1/status`, h2c);
      assert.equal(status.status, 200);
      const ws = await plainRequest(`${sluice.baseUrl}/v1/ws`, h2c);
      assert.equal(ws.status, 426);
    });
  });

  test('heartbeats: a socket that stops answering pings is cut within two intervals; others stay', async () => {
    const intervalMs = 400;
    await withSluice(
      postgres,
      SQL,
      async ({ sluice }) => {
        const healthy = await WsTestClient.open(sluice.baseUrl);
        const dead = await WsTestClient.open(sluice.baseUrl, { autoPong: false });
        const openedAt = Date.now();
        await dead.closed;
        // Pinged at the first tick, cut at the second: never later than two intervals (plus the
        // timer's own slack on a busy machine).
        assert.ok(
          Date.now() - openedAt < 2 * intervalMs + 1_000,
          `cut after ${Date.now() - openedAt} ms`,
        );
        // Past the HTTP request timeout (1 s here, and Node checks every second): an upgraded
        // socket is the heartbeat's alone.
        await sleep(3_000);
        assert.equal(healthy.closeCode, undefined, 'a socket answering pings stays open');
        await waitForMetric(sluice.baseUrl, 'sluice_ws_sockets_closed_total', 1, [
          'reason="heartbeat"',
        ]);
        healthy.close();
      },
      { wsHeartbeatMs: intervalMs, requestTimeoutMs: 1_000 },
    );
  });

  test('shutdown closes every socket with 1001, at once', async () => {
    await withSluice(postgres, SQL, async ({ sluice, url }) => {
      const sync = await syncOverHttp(url, ITEMS);
      const clients = await Promise.all([1, 2, 3].map(() => WsTestClient.open(sluice.baseUrl)));
      for (const client of clients) {
        client.send(subscribeFrame('a', ITEMS, sync.handle, sync.offset));
        await client.nextMessages('a');
      }
      const started = Date.now();
      await sluice.close();
      const codes = await Promise.all(clients.map((client) => client.closed));
      assert.deepEqual(codes, [1001, 1001, 1001]);
      // Well before any long-poll or heartbeat timer could have ended them.
      assert.ok(Date.now() - started < 5_000, `closed after ${Date.now() - started} ms`);
    });
  });

  test('backpressure: a client that stops reading is closed with 4000, not buffered without bound', async () => {
    await withSluice(
      postgres,
      SQL,
      async ({ db, sluice, url }) => {
        const sync = await syncOverHttp(url, ITEMS);
        const client = await WsTestClient.open(sluice.baseUrl);
        // Each subscription has at most one batch unsent, and every batch holds at least one
        // 64 kB row: with the limit at its 64 kB minimum, the second batch left unsent passes
        // it, wherever the log's chunk boundaries fall among the rows.
        for (const id of ['a', 'b', 'c', 'd']) {
          client.send(subscribeFrame(id, ITEMS, sync.handle, sync.offset));
          await client.nextMessages(id);
        }
        client.socket.pause();
        // Far more than the kernel's socket buffers hold: 4 × 24 MB in 1 MB transactions.
        for (let i = 0; i < 24; i++) {
          await db.query(
            `INSERT INTO items SELECT 1000 + ${i} * 16 + g, repeat(md5(g::text), 2048) FROM generate_series(1, 16) g`,
          );
        }
        await waitForMetric(
          sluice.baseUrl,
          'sluice_ws_sockets_closed_total',
          1,
          ['reason="backpressure"'],
          60_000,
        );
        client.socket.resume();
        assert.equal(await client.closed, 4000);
        assert.equal(client.closeReason, 'send buffer full');
      },
      { wsMaxBufferedBytes: 65_536, chunkBytes: 1_048_576 },
    );
  });

  test('metrics: open sockets, subscriptions, frames and bytes sent', async () => {
    await withSluice(postgres, SQL, async ({ db, sluice, url }) => {
      const sync = await syncOverHttp(url, ITEMS);
      const client = await WsTestClient.open(sluice.baseUrl);
      client.send(subscribeFrame('a', ITEMS, sync.handle, sync.offset));
      sync.rows.apply((await client.nextMessages('a')).messages);
      await db.query(`INSERT INTO items VALUES (21, 'x')`);
      const frame = await client.nextMessages('a');
      sync.rows.apply(frame.messages);
      assert.equal(await metric(sluice.baseUrl, 'sluice_ws_sockets_open'), 1);
      assert.equal(await metric(sluice.baseUrl, 'sluice_ws_subscriptions'), 1);
      assert.equal(
        await metric(sluice.baseUrl, 'sluice_ws_frames_sent_total', ['type="status"']),
        1,
      );
      assert.equal(
        await metric(sluice.baseUrl, 'sluice_ws_frames_sent_total', ['type="messages"']),
        2,
      );
      assert.ok((await metric(sluice.baseUrl, 'sluice_ws_bytes_sent_total')) > 0);
      client.send({ type: 'unsubscribe', id: 'a' });
      await waitForMetric(sluice.baseUrl, 'sluice_ws_subscriptions', 0);
      client.close();
      await waitForMetric(sluice.baseUrl, 'sluice_ws_sockets_closed_total', 1, ['reason="client"']);
      assert.equal(await metric(sluice.baseUrl, 'sluice_ws_sockets_open'), 0);
      await assertMatchesPostgres(db, ITEMS, itemRows(sync.rows));
    });
  });
});

async function waitForMetric(
  baseUrl: string,
  name: string,
  value: number,
  labels: string[] = [],
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = NaN;
  while (Date.now() < deadline) {
    last = await metric(baseUrl, name, labels);
    if (last === value) return;
    await sleep(50);
  }
  assert.fail(`${name}${labels.join(',')} is ${last}, not ${value}`);
}

/** A GET with `headers` through node:http, which reads a non-101 answer to an upgrade as usual. */
function plainRequest(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { headers }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    request.on('upgrade', () => reject(new Error('upgraded')));
    request.on('error', reject);
  });
}
