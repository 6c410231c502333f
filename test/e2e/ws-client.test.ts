// @sluice/client over the WebSocket live transport (docs/protocol.md §12) against a real Sluice
// and Postgres: many streams of a page on one socket, each getting exactly the messages a
// long-polling stream gets; must-refetch; fallback and back told by pushed status frames (no
// status polling while the socket is open); reconnecting after the server drops the socket; and
// `auto` following over long-polls while a proxy refuses the upgrade, then moving to the socket.
// Node 20 has no global WebSocket: the streams are given the `ws` package's. Every test ends with
// the oracle: each client's rows equal SELECT in Postgres.
import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import { CONTROL, PARAMS, PATHS } from '@sluice/protocol';
import {
  startFaultProxy,
  startPostgres,
  terminateWalsender,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import {
  Shape,
  ShapeStream,
  isChangeMessage,
  type Message,
  type Mode,
  type ShapeStreamOptions,
} from '@sluice/client';
import WebSocket from 'ws';
import { waitForStatus } from '../support/fallback-checks.js';
import { assertMatchesPostgres, type ShapeSpec } from '../support/shape-oracle.js';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';
import { StableSluice } from '../support/stable-port-sluice.js';
import { startUpgradeGate } from '../support/upgrade-gate.js';

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const BACKOFF = { initialDelay: 100, maxDelay: 500, multiplier: 2 };

async function until(what: string, done: () => boolean, timeoutMs = 20_000): Promise<number> {
  const started = Date.now();
  while (!done()) {
    if (Date.now() - started > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await sleep(20);
  }
  return Date.now() - started;
}

/** The `ws` package's WebSocket, counting the sockets the client opens with it. */
function countingWebSocket() {
  const opened: WebSocket[] = [];
  class Counting extends WebSocket {
    constructor(url: string) {
      super(url);
      opened.push(this);
    }
  }
  return { WebSocket: Counting, opened };
}

/** A fetch client that keeps every shape URL and status request it sends. */
function recordingFetch() {
  const shapes: { url: URL; at: number; status: number }[] = [];
  const statusPolls: number[] = [];
  const fetchClient: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : input.toString());
    if (url.pathname.endsWith(PATHS.status)) statusPolls.push(Date.now());
    const at = Date.now();
    const response = await fetch(input, init);
    if (url.pathname.endsWith(PATHS.shape)) shapes.push({ url, at, status: response.status });
    return response;
  };
  const longPolls = () => shapes.filter((s) => s.url.searchParams.get(PARAMS.live) === 'true');
  return { fetchClient, shapes, statusPolls, longPolls };
}

type Options = Omit<ShapeStreamOptions, 'url' | 'signal'>;

/** A stream, its Shape and every message it delivers; `close()` stops it for good. */
function follow(url: string, options: Options) {
  const controller = new AbortController();
  const modes: Mode[] = [];
  const stream = new ShapeStream({
    backoffOptions: BACKOFF,
    ...options,
    url,
    signal: controller.signal,
    onModeChange: (mode) => modes.push(mode),
  });
  const messages: Message[] = [];
  stream.subscribe((batch) => void messages.push(...batch));
  const shape = new Shape(stream);
  const refetches = () =>
    messages.filter(
      (m) =>
        !isChangeMessage(m) && m.headers.control === CONTROL.mustRefetch && !m.headers.fallback,
    ).length;
  /** The change messages, as comparable text. */
  const changes = () =>
    messages
      .filter(isChangeMessage)
      .map((m) => JSON.stringify([m.key, m.headers.operation, m.value]));
  /** The rows, for the oracle; a stream that failed fails it at once. */
  const rows = () => {
    if (stream.error) throw stream.error;
    return shape.currentRows;
  };
  return {
    stream,
    shape,
    rows,
    modes,
    messages,
    refetches,
    changes,
    close: () => controller.abort(),
  };
}

async function itemsDatabase(): Promise<TestDatabase> {
  const db = await pg.createDatabase();
  await db.query('CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, tag text)');
  await db.query(
    "INSERT INTO items SELECT g, g % 7, CASE WHEN g % 2 = 0 THEN 'even' ELSE 'odd' END FROM generate_series(1, 50) g",
  );
  return db;
}

const ITEMS: ShapeSpec = { table: 'items' };

test('several streams on one socket get the messages long-polls get; rows equal SELECT; the socket closes with the last', async (t: TestContext) => {
  const db = await itemsDatabase();
  const sluice = await startSluice(db, { longPollTimeoutMs: 1_000, secret: 'sesame' });
  const { WebSocket: Counting, opened } = countingWebSocket();
  const recording = recordingFetch();
  const url = `${sluice.baseUrl}${PATHS.shape}`;
  // Seven shapes: over long-polls a browser (six connections per origin) could not follow them.
  const wheres = [
    undefined,
    'id <= 10',
    'id > 40',
    'v >= 5',
    "tag = 'even'",
    'id % 3 = $1',
    'v < 2 OR id = 25',
  ];
  const onSocket = wheres.map((where, i) =>
    follow(url, {
      params: {
        table: 'items',
        secret: 'sesame',
        ...(where ? { where } : {}),
        ...(i === 5 ? { params: ['1'] } : {}),
      },
      webSocket: Counting,
      fetchClient: recording.fetchClient,
    }),
  );
  const columns = follow(url, {
    params: { table: 'items', columns: ['id', 'tag'], replica: 'full', secret: 'sesame' },
    webSocket: Counting,
    fetchClient: recording.fetchClient,
  });
  const longPoll = follow(url, {
    params: { table: 'items', secret: 'sesame' },
    liveTransport: 'long-poll',
  });
  const all = [...onSocket, columns, longPoll];
  try {
    await Promise.all(all.map((c) => c.shape.rows));
    await until('every socket stream subscribed', () => opened[0]?.readyState === WebSocket.OPEN);
    await sleep(500);
    const pollsBefore = recording.longPolls().length;

    for (let round = 0; round < 5; round++) {
      await db.query(
        `BEGIN;
         INSERT INTO items VALUES (${100 + round}, ${round}, 'even'), (${200 + round}, 6, NULL);
         UPDATE items SET v = (v + 3) % 7, tag = 'odd' WHERE id IN (${2 + round}, ${41 + round});
         DELETE FROM items WHERE id = ${20 + round};
         COMMIT`,
      );
      await sleep(50);
    }
    await db.query('UPDATE items SET id = id + 1000 WHERE id = 30'); // a key change

    for (const [i, where] of wheres.entries()) {
      const spec: ShapeSpec = {
        ...ITEMS,
        ...(where ? { where: i === 5 ? 'id % 3 = 1' : where } : {}),
      };
      await assertMatchesPostgres(db, spec, onSocket[i]!.rows);
    }
    await assertMatchesPostgres(db, { ...ITEMS, columns: ['id', 'tag'] }, columns.rows);
    await assertMatchesPostgres(db, ITEMS, longPoll.rows);
    // The whole-table stream on the socket got exactly the long-poller's change messages.
    await until(
      'the same changes',
      () => onSocket[0]!.changes().length === longPoll.changes().length,
    );
    assert.deepEqual(onSocket[0]!.changes(), longPoll.changes());
    assert.equal(opened.length, 1, 'one socket for the eight streams');
    assert.equal(recording.longPolls().length, pollsBefore, 'no long-poll once on the socket');
    assert.ok(all.every((c) => c.refetches() === 0));
    t.diagnostic(`${recording.shapes.length} HTTP requests for 8 socket streams`);

    for (const c of onSocket) c.close();
    assert.equal(opened[0]?.readyState, WebSocket.OPEN, 'still held by one stream');
    columns.close();
    await until('the socket closed', () => opened[0]?.readyState === WebSocket.CLOSED);
  } finally {
    for (const c of all) c.close();
    await sluice.close();
    await db.drop();
  }
});

test('a must-refetch frame is followed like a 409: one refetch, then live on the socket again', async () => {
  const db = await itemsDatabase();
  const sluice = await startSluice(db, { longPollTimeoutMs: 1_000 });
  const { WebSocket: Counting, opened } = countingWebSocket();
  const recording = recordingFetch();
  const client = follow(`${sluice.baseUrl}${PATHS.shape}`, {
    params: { table: 'items' },
    webSocket: Counting,
    liveTransport: 'websocket',
    fetchClient: recording.fetchClient,
  });
  try {
    await client.shape.rows;
    await until('on the socket', () => opened[0]?.readyState === WebSocket.OPEN);
    await db.query('INSERT INTO items VALUES (500, 1, NULL)');
    await assertMatchesPostgres(db, ITEMS, client.rows);
    const handle = client.stream.shapeHandle;

    // TRUNCATE rotates the shape: the subscription gets must-refetch with the new handle.
    await db.query('TRUNCATE items');
    await db.query("INSERT INTO items VALUES (1, 1, 'a'), (2, 2, 'b')");
    await until('refetched', () => client.refetches() === 1);
    await assertMatchesPostgres(db, ITEMS, client.rows);
    assert.notEqual(client.stream.shapeHandle, handle);
    const refetch = recording.shapes.find(
      (s) =>
        s.url.searchParams.get(PARAMS.offset) === '-1' &&
        s.url.searchParams.has(PARAMS.cacheBuster),
    );
    assert.ok(refetch, 'the shape was read again from -1 over HTTP, with a cache-buster');
    // And it follows the new shape live, on the same socket.
    await sleep(300);
    await db.query('INSERT INTO items VALUES (3, 3, NULL)');
    await assertMatchesPostgres(db, ITEMS, client.rows);
    assert.equal(opened.length, 1);
    assert.equal(recording.longPolls().length, 0, 'never a long-poll');
    assert.equal(client.refetches(), 1);
  } finally {
    client.close();
    await sluice.close();
    await db.drop();
  }
});

test('fallback and back told by the socket: at once, without status polling, resuming the log', async (t: TestContext) => {
  const db = await itemsDatabase();
  const dbUrl = new URL(db.url);
  const proxy = await startFaultProxy({ host: dbUrl.hostname, port: Number(dbUrl.port || 5432) });
  const sluice = await startSluice(db, {
    longPollTimeoutMs: 20_000,
    replicationDatabaseUrl: proxy.url(db.url),
    replicationRetryMinMs: 200,
    replicationRetryMaxMs: 400,
    fallbackMaxAgeS: 1,
  });
  const { WebSocket: Counting, opened } = countingWebSocket();
  const recording = recordingFetch();
  const options: Options = {
    params: { table: 'items' },
    webSocket: Counting,
    fetchClient: recording.fetchClient,
    // Short: a poll would show up in the recording while the socket is open (none may).
    statusPollIntervalMs: 200,
    fallbackRefreshIntervalMs: 1_000,
  };
  const main = follow(`${sluice.baseUrl}${PATHS.shape}`, options);
  const odd = follow(`${sluice.baseUrl}${PATHS.shape}`, {
    ...options,
    params: { table: 'items', where: "tag = 'odd'" },
  });
  try {
    await Promise.all([main.shape.rows, odd.shape.rows]);
    await until('on the socket', () => opened[0]?.readyState === WebSocket.OPEN);
    await db.query('INSERT INTO items VALUES (600, 1, NULL)');
    await assertMatchesPostgres(db, ITEMS, main.rows);
    const handle = main.stream.shapeHandle;

    // The outage: the walsender is terminated and every reconnect refused.
    const cutAt = Date.now();
    await terminateWalsender(db, db.slotName);
    proxy.setMode('reset');
    await waitForStatus(sluice.baseUrl, 'fallback', 10_000);
    await until('fallback', () => [main, odd].every((c) => c.stream.mode === 'fallback'));
    t.diagnostic(`streams in fallback ${Date.now() - cutAt} ms after replication was cut`);
    // Rows written during the outage come with the fallback refreshes.
    await db.query("DELETE FROM items WHERE id = 3; INSERT INTO items VALUES (601, 2, 'odd')");
    await assertMatchesPostgres(db, ITEMS, main.rows);
    await assertMatchesPostgres(db, { ...ITEMS, where: "tag = 'odd'" }, odd.rows);

    const passAt = Date.now();
    proxy.setMode('pass');
    await waitForStatus(sluice.baseUrl, 'live', 30_000);
    await until('live', () => [main, odd].every((c) => c.stream.mode === 'live'));
    t.diagnostic(`streams live ${Date.now() - passAt} ms after replication was let through`);
    await db.query("INSERT INTO items VALUES (602, 3, 'odd'); UPDATE items SET v = 0 WHERE id = 1");
    await assertMatchesPostgres(db, ITEMS, main.rows);
    await assertMatchesPostgres(db, { ...ITEMS, where: "tag = 'odd'" }, odd.rows);

    assert.deepEqual(main.modes, ['live', 'fallback', 'live']);
    assert.deepEqual(recording.statusPolls, [], 'no status poll: the socket pushed the status');
    assert.equal(main.refetches(), 0, 'the log was resumed, not refetched');
    assert.equal(main.stream.shapeHandle, handle);
    assert.equal(opened.length, 1, 'the socket stayed open throughout');
    assert.equal(recording.longPolls().length, 0, 'never a long-poll');
  } finally {
    main.close();
    odd.close();
    await sluice.close();
    await proxy.close();
    await db.drop();
  }
});

test('the server drops the socket (restart): the client reconnects and resumes from its offset', async (t: TestContext) => {
  const db = await itemsDatabase();
  const sluice = await StableSluice.start(db, { longPollTimeoutMs: 1_000 });
  const { WebSocket: Counting, opened } = countingWebSocket();
  const recording = recordingFetch();
  const client = follow(`${sluice.baseUrl}${PATHS.shape}`, {
    params: { table: 'items', where: 'id > 10' },
    webSocket: Counting,
    liveTransport: 'websocket',
    fetchClient: recording.fetchClient,
  });
  const spec = { ...ITEMS, where: 'id > 10' };
  try {
    await client.shape.rows;
    await until('on the socket', () => opened[0]?.readyState === WebSocket.OPEN);
    await db.query('INSERT INTO items VALUES (700, 1, NULL)');
    await assertMatchesPostgres(db, spec, client.rows);
    const handle = client.stream.shapeHandle;
    const snapshots = recording.shapes.filter(
      (s) => s.url.searchParams.get(PARAMS.offset) === '-1',
    );

    await sluice.stop(); // closes every socket with 1001
    await until('the socket closed', () => opened[0]?.readyState === WebSocket.CLOSED);
    await db.query('INSERT INTO items VALUES (701, 2, NULL); DELETE FROM items WHERE id = 11');
    await sleep(500);
    await sluice.resume();
    await waitUntilLive(sluice.baseUrl);
    await assertMatchesPostgres(db, spec, client.rows, 30_000);
    await db.query('UPDATE items SET v = 9 WHERE id = 700');
    await assertMatchesPostgres(db, spec, client.rows);

    assert.ok(opened.length >= 2, 'a new socket');
    assert.equal(opened.at(-1)?.readyState, WebSocket.OPEN);
    t.diagnostic(`${opened.length} socket attempts`);
    assert.equal(client.stream.shapeHandle, handle, 'the same shape, resumed');
    assert.equal(client.refetches(), 0, 'no refetch');
    assert.equal(
      recording.shapes.filter((s) => s.url.searchParams.get(PARAMS.offset) === '-1').length,
      snapshots.length,
      'no snapshot read again',
    );
    assert.equal(recording.longPolls().length, 0, "'websocket' never long-polls");
  } finally {
    client.close();
    await sluice.close();
    await db.drop();
  }
});

test('auto: long-polls while a proxy refuses /v1/ws, the socket once it lets it through', async () => {
  const db = await itemsDatabase();
  const sluice = await startSluice(db, { longPollTimeoutMs: 1_000 });
  const gate = await startUpgradeGate(sluice.baseUrl);
  const { WebSocket: Counting, opened } = countingWebSocket();
  const recording = recordingFetch();
  const client = follow(`${gate.baseUrl}${PATHS.shape}`, {
    params: { table: 'items' },
    webSocket: Counting,
    fetchClient: recording.fetchClient,
  });
  try {
    await client.shape.rows;
    await db.query('INSERT INTO items VALUES (800, 1, NULL); DELETE FROM items WHERE id = 4');
    await assertMatchesPostgres(db, ITEMS, client.rows);
    assert.ok(gate.upgrades.refused >= 1, 'the upgrade was refused');
    assert.ok(recording.longPolls().length >= 1, 'followed over long-polls meanwhile');
    assert.equal(gate.upgrades.passed, 0);

    // The proxy lets upgrades through: the socket is tried again and takes over.
    gate.allowUpgrades = true;
    await until('on the socket', () => opened.at(-1)?.readyState === WebSocket.OPEN, 30_000);
    await sleep(300);
    const polls = recording.longPolls().length;
    await db.query('INSERT INTO items VALUES (801, 2, NULL); UPDATE items SET v = 5 WHERE id = 5');
    await assertMatchesPostgres(db, ITEMS, client.rows);
    await sleep(1_500); // longer than the long-poll timeout: a long-poller would have asked again
    assert.equal(recording.longPolls().length, polls, 'no long-poll once on the socket');
    assert.equal(client.refetches(), 0);
  } finally {
    client.close();
    await gate.close();
    await sluice.close();
    await db.drop();
  }
});
