// The WebSocket live transport (docs/protocol.md §12) through faults, with @sluice/client over its
// WebSocket (the `ws` package's, as Node 20 needs) beside long-poll clients (official and
// Sluice's), while a writer commits batches throughout:
// - a proxy in front of the server cuts sockets in the middle of a batch (the long-poll clients
//   go through it too; their answers are not cut: a body cut short ends the official client's
//   stream with an error, and Sluice's long-poll recovery is long-poll-cuts.test.ts's subject);
// - the server is killed with SIGKILL and restarted on the same storage, twice;
// - replication goes down (walsender terminated, reconnects refused) and comes back: the socket
//   stays open, pushes the states, and the time from replication streaming again to every
//   WebSocket client being live is measured beside the long-poll client's status polling;
// - a client that never reads: the server holds at most one unsent batch per subscription, its
//   memory stays bounded while the other clients keep following, and the socket is closed with
//   4000 once a frame finds its unsent bytes past the limit.
// Each ends with the oracle: every client equal to SELECT in Postgres, every change exactly once
// (once Sluice's clients have been through fallback, the official client's changes only).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { freePort } from '@sluice/local-postgres';
import {
  PATHS,
  WS_CLOSE_CODES,
  WS_FRAME_TYPES,
  type WsServerFrame,
  type WsSubscribeFrame,
} from '@sluice/protocol';
import {
  proxyTargetOf,
  startFaultProxy,
  startPostgres,
  terminateWalsender,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import { ChangeAudit } from '../support/change-audit.js';
import { CountingFollower } from '../support/counting-follower.js';
import { startCuttingProxy } from '../support/cutting-proxy.js';
import { RawWebSocket } from '../support/raw-web-socket.js';
import { readToEnd } from '../support/raw-shape.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { fetchStatus, waitForStatus } from '../support/server-status.js';
import { assertMatchesPostgres, type ShapeSpec } from '../support/shape-oracle.js';
import { SluiceFollower } from '../support/sluice-follower.js';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';
import { tapWebSockets, type WebSocketTap } from '../support/web-socket-tap.js';

let pg: TestPostgres;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, done: () => boolean, timeoutMs = 30_000): Promise<number> {
  const started = Date.now();
  while (!done()) {
    if (Date.now() - started > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await sleep(10);
  }
  return Date.now() - started;
}

/** Rejects with `what` when `promise` has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function itemsDatabase(): Promise<TestDatabase> {
  const db = await pg.createDatabase();
  await db.query(`CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, note text);
    INSERT INTO items SELECT g, g % 7, 'seed' FROM generate_series(1, 100) g;`);
  return db;
}

/**
 * Commits batches to `items` until stopped: each transaction inserts `rows` rows with notes of
 * about `noteBytes`, updates a few earlier rows and deletes one. A batch whose commit fails (a
 * restart) is retried with the next ids; the oracle compares with SELECT, so nothing needs to
 * know which commits made it.
 */
class BatchWriter {
  batches = 0;
  /** Bytes of notes committed, roughly what the server must send each full-table follower. */
  noteBytes = 0;
  #nextId = 1_000;
  #stopped = false;
  readonly done: Promise<void>;

  constructor(
    private readonly db: TestDatabase,
    private readonly options: { rows: number; noteBytes: number; pauseMs: number },
  ) {
    this.done = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.done;
  }

  async #run(): Promise<void> {
    const { rows, noteBytes, pauseMs } = this.options;
    // md5 text repeated: Postgres compresses it (cheap WAL), the wire carries it whole.
    const repeats = Math.max(1, Math.round(noteBytes / 32));
    while (!this.#stopped) {
      const first = this.#nextId;
      this.#nextId += rows;
      try {
        await this.db.query(`BEGIN;
          INSERT INTO items SELECT g, g % 7, repeat(md5(g::text), ${repeats})
            FROM generate_series(${first}, ${first + rows - 1}) g;
          UPDATE items SET v = v + 1, note = 'updated' WHERE id IN (${first - 3 * rows}, ${(first % 97) + 1});
          DELETE FROM items WHERE id = ${first - 2 * rows + 1};
          COMMIT;`);
        this.batches++;
        this.noteBytes += rows * repeats * 32;
      } catch {
        await this.db.query('ROLLBACK').catch(() => undefined);
        await sleep(100);
      }
      await sleep(pauseMs);
    }
  }
}

const WHOLE: ShapeSpec = { table: 'items' };
const EVEN: ShapeSpec = { table: 'items', where: 'v % 2 = 0' };

const shapeParams = (spec: ShapeSpec) => ({
  table: spec.table,
  ...(spec.where ? { where: spec.where } : {}),
});

const overSocket = (url: string, spec: ShapeSpec, tap: WebSocketTap) =>
  new SluiceFollower(url, {
    params: shapeParams(spec),
    liveTransport: 'websocket',
    webSocket: tap.WebSocket,
  });

/**
 * The oracle and, unless told otherwise, the exactly-once audit for every Sluice follower (their
 * specs alongside). No follower may have refetched or failed.
 */
async function assertFollowersConverged(
  db: TestDatabase,
  followers: [string, ShapeSpec, SluiceFollower][],
  { exactlyOnce = true } = {},
): Promise<void> {
  for (const [name, spec, follower] of followers) {
    await assertMatchesPostgres(db, spec, () => follower.rows, 60_000);
    assert.deepEqual(follower.errors, [], `${name}: no client error`);
    assert.equal(follower.mustRefetches, 0, `${name}: no refetch`);
    if (exactlyOnce) {
      assert.deepEqual(follower.audit.anomalies, [], `${name}: every change exactly once`);
    }
  }
}

/** The same for the official client. */
async function assertOfficialConverged(
  db: TestDatabase,
  official: CountingFollower,
  audit: ChangeAudit,
): Promise<void> {
  await assertMatchesPostgres(db, WHOLE, () => [...official.rows.values()], 60_000);
  assert.deepEqual(official.errors, [], 'official client: no error');
  assert.equal(official.mustRefetches, 0, 'official client: no refetch');
  assert.deepEqual(audit.anomalies, [], 'official client: every change exactly once');
}

const upToDate = (followers: SluiceFollower[]) => () =>
  followers.every((follower) => follower.upToDates > 0);

test('sockets cut mid-batch by a proxy: every client resumes, nothing lost or twice', async (t) => {
  const db = await itemsDatabase();
  const sluice = await startSluice(db, { longPollTimeoutMs: 1_000 });
  const proxy = await startCuttingProxy(sluice.baseUrl);
  const url = `${proxy.baseUrl}${PATHS.shape}`;
  const tap = tapWebSockets();
  const whole = overSocket(url, WHOLE, tap);
  const even = overSocket(url, EVEN, tap);
  const longPoll = new SluiceFollower(url, {
    params: { table: 'items' },
    liveTransport: 'long-poll',
  });
  const official = new CountingFollower(url, { table: 'items' });
  const officialAudit = ChangeAudit.of(official.stream);
  let writer: BatchWriter | undefined;
  try {
    await until('every client synced', upToDate([whole, even, longPoll]));
    // Batches of 100 rows of ~300 bytes: each frame and long-poll answer is tens of kB.
    writer = new BatchWriter(db, { rows: 100, noteBytes: 256, pauseMs: 50 });
    for (let cut = 1; cut <= 5; cut++) {
      await within(
        proxy.cutMidChunk({ kind: 'websocket', minBytes: 8_192 }),
        30_000,
        `WebSocket cut ${cut}: a batch of 8 kB or more`,
      );
      // Resumed on a new socket, and following again, before the next cut.
      const before = tap.changes;
      await until(`changes over a socket after cut ${cut}`, () => tap.changes > before);
    }
    await until('the socket open again', () => tap.open.size === 1);
    await sleep(500);
    await writer.stop();
    t.diagnostic(
      `${writer.batches} batches; cuts: ${JSON.stringify(proxy.cuts)}; sockets opened: ${tap.opened.length}`,
    );
    assert.ok(tap.opened.length >= 6, 'the shared socket was opened again after every cut');
    await assertFollowersConverged(db, [
      ['WebSocket, whole table', WHOLE, whole],
      ['WebSocket, where v % 2 = 0', EVEN, even],
      ["Sluice's long-polls", WHOLE, longPoll],
    ]);
    await assertOfficialConverged(db, official, officialAudit);
    assert.equal(whole.longPolls + even.longPolls, 0, 'the WebSocket streams never long-polled');
    assert.ok(tap.changes > 0, 'changes came over the sockets');
  } catch (error) {
    t.diagnostic(
      `cuts ${JSON.stringify(proxy.cuts)}; errors: long-poll ${longPoll.errors.map(String).join('; ')}, ` +
        `official ${official.errors.map(String).join('; ')}, WebSocket ${[...whole.errors, ...even.errors].map(String).join('; ')}`,
    );
    throw error;
  } finally {
    await writer?.stop();
    for (const follower of [whole, even, longPoll, official]) follower.close();
    await proxy.close();
    await sluice.close();
    await db.drop();
  }
});

test('kill -9 of the server and restarts: WebSocket clients resume from their offsets', async (t) => {
  const db = await itemsDatabase();
  const storageDir = await mkdtemp(join(tmpdir(), 'sluice-ws-kill-'));
  const env = {
    DATABASE_URL: db.url,
    SLUICE_PORT: String(await freePort()),
    SLUICE_STORAGE_DIR: storageDir,
    SLUICE_SLOT_NAME: db.slotName,
    SLUICE_PUBLICATION_NAME: db.publicationName,
    SLUICE_LONG_POLL_TIMEOUT_MS: '2000',
    SLUICE_REPLICATION_RETRY_MIN_MS: '100',
    SLUICE_LOG_LEVEL: 'warn',
  };
  let server = await startServerProcess(env);
  const tap = tapWebSockets();
  const url = `${server.baseUrl}${PATHS.shape}`;
  const whole = overSocket(url, WHOLE, tap);
  const even = overSocket(url, EVEN, tap);
  const official = new CountingFollower(url, { table: 'items' });
  const officialAudit = ChangeAudit.of(official.stream);
  let writer: BatchWriter | undefined;
  try {
    await waitUntilLive(server.baseUrl);
    await until('every client synced', upToDate([whole, even]));
    writer = new BatchWriter(db, { rows: 20, noteBytes: 64, pauseMs: 20 });
    for (let kill = 1; kill <= 2; kill++) {
      await sleep(1_500);
      const before = tap.changes;
      await server.stop('SIGKILL');
      await sleep(1_000); // writes go on while Sluice is down
      server = await startServerProcess(env);
      await waitUntilLive(server.baseUrl);
      await until(`changes over a socket after restart ${kill}`, () => tap.changes > before);
    }
    await sleep(1_000);
    await writer.stop();
    t.diagnostic(`${writer.batches} batches; sockets opened: ${tap.opened.length}`);
    assert.ok(tap.opened.length >= 3, 'the socket was opened again after each restart');
    await assertFollowersConverged(db, [
      ['WebSocket, whole table', WHOLE, whole],
      ['WebSocket, where v % 2 = 0', EVEN, even],
    ]);
    await assertOfficialConverged(db, official, officialAudit);
  } finally {
    await writer?.stop();
    for (const follower of [whole, even, official]) follower.close();
    await server.stop('SIGKILL');
    await rm(storageDir, { recursive: true, force: true });
    await db.drop();
  }
});

test('replication outage and recovery: the socket stays open and every WebSocket client is live again at once', async (t) => {
  const db = await itemsDatabase();
  const proxy = await startFaultProxy(proxyTargetOf(db.url));
  const sluice = await startSluice(db, {
    replicationDatabaseUrl: proxy.url(db.url),
    replicationRetryMinMs: 200,
    replicationRetryMaxMs: 500,
    longPollTimeoutMs: 1_000,
  });
  const url = `${sluice.baseUrl}${PATHS.shape}`;
  // Two pages: one socket with five shapes, another with one.
  const page = tapWebSockets();
  const otherPage = tapWebSockets();
  const specs: ShapeSpec[] = [
    WHOLE,
    EVEN,
    { table: 'items', where: 'id < 50' },
    { table: 'items', where: 'v = 3' },
    { table: 'items', where: 'id % 10 = 1' },
  ];
  const webSocketClients: [string, ShapeSpec, SluiceFollower][] = [
    ...specs.map((spec): [string, ShapeSpec, SluiceFollower] => [
      `WebSocket, ${spec.where ?? 'whole table'}`,
      spec,
      overSocket(url, spec, page),
    ]),
    ['WebSocket, second page', WHOLE, overSocket(url, WHOLE, otherPage)],
  ];
  // Sluice's client without a socket polls /v1/status, at its default interval.
  const longPoll = new SluiceFollower(url, {
    params: { table: 'items' },
    liveTransport: 'long-poll',
  });
  const official = new CountingFollower(url, { table: 'items' });
  const officialAudit = ChangeAudit.of(official.stream);
  const sockets = webSocketClients.map(([, , follower]) => follower);
  let writer: BatchWriter | undefined;
  try {
    await waitUntilLive(sluice.baseUrl);
    await until('every client synced', upToDate([...sockets, longPoll]));
    writer = new BatchWriter(db, { rows: 5, noteBytes: 32, pauseMs: 20 });
    await sleep(1_000);

    await terminateWalsender(db, db.slotName);
    proxy.setMode('reset');
    await waitForStatus(sluice.baseUrl, 'fallback');
    const fallbackIn = await until(
      'every WebSocket client in fallback',
      () => sockets.every((follower) => follower.mode === 'fallback'),
      15_000,
    );
    await sleep(1_500); // writes go on during the outage

    proxy.setMode('pass');
    const { body } = await waitForStatus(sluice.baseUrl, 'live', 30_000);
    const streamingAgain = Date.parse(body.since);
    const liveAt = (follower: SluiceFollower) =>
      follower.modes.find(({ mode, at }) => mode === 'live' && at >= streamingAgain - 1_000)?.at;
    await until(
      'every WebSocket client live again',
      () => sockets.every((follower) => liveAt(follower) !== undefined),
      15_000,
    );
    const socketTimes = sockets.map((follower) => (liveAt(follower) ?? NaN) - streamingAgain);
    await until('the long-poll client live again', () => liveAt(longPoll) !== undefined, 30_000);
    const longPollTime = (liveAt(longPoll) ?? NaN) - streamingAgain;
    t.diagnostic(
      `replication streaming again → every WebSocket client live: max ${Math.max(...socketTimes)} ms ` +
        `(each: ${socketTimes.join(', ')} ms); → the long-poll client live: ${longPollTime} ms ` +
        `(its /v1/status poll interval: 5000 ms, the client's default); clients in fallback ` +
        `${fallbackIn} ms after the server`,
    );
    // Timings are not asserted beyond a bound no working push can miss: the poll interval.
    for (const time of socketTimes)
      assert.ok(time < 5_000, `a WebSocket client live after ${time} ms`);

    await sleep(1_000);
    await writer.stop();
    assert.equal(page.opened.length, 1, 'the first page kept its one socket through the outage');
    assert.equal(otherPage.opened.length, 1, 'the second page kept its one socket');
    assert.deepEqual(
      page.statuses.filter((status, i, all) => status !== all[i - 1]),
      ['live', 'fallback', 'live'],
      'the socket pushed each state once it changed',
    );
    for (const follower of sockets) {
      const polls = follower.requests.filter((request) => request.pathname === PATHS.status);
      assert.equal(polls.length, 0, 'no status polling while a socket is open');
    }
    assert.ok(
      longPoll.requests.some((request) => request.pathname === PATHS.status),
      'the long-poll client polled the status',
    );
    // Sluice's clients replaced their rows with fallback rows during the outage and replay the
    // log from their last live offset after it (docs/protocol.md §7.5): a row the fallback rows
    // already held comes again as an insert, which the client applies as an upsert. Exactly once
    // is the official client's check here; it only ever reads the log.
    await assertFollowersConverged(
      db,
      [...webSocketClients, ["Sluice's long-polls", WHOLE, longPoll]],
      { exactlyOnce: false },
    );
    await assertOfficialConverged(db, official, officialAudit);
    assert.equal((await fetchStatus(sluice.baseUrl)).status, 'live');
  } finally {
    await writer?.stop();
    for (const follower of [...sockets, longPoll, official]) follower.close();
    await sluice.close();
    await proxy.close();
    await db.drop();
  }
});

/** Resident set size of a process in kB (Linux). */
async function rssKb(pid: number | undefined): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]);
}

async function metric(baseUrl: string, line: RegExp): Promise<number | undefined> {
  const text = await (await fetch(`${baseUrl}${PATHS.metrics}`)).text();
  const match = line.exec(text);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

test('a client that never reads: memory stays bounded, the others keep following, its socket is closed with 4000', async (t) => {
  const db = await itemsDatabase();
  const storageDir = await mkdtemp(join(tmpdir(), 'sluice-ws-slow-'));
  const maxBufferedBytes = 262_144;
  let server: ServerProcess | undefined;
  let slow: RawWebSocket | undefined;
  let writer: BatchWriter | undefined;
  const followers: { close(): void }[] = [];
  try {
    server = await startServerProcess({
      DATABASE_URL: db.url,
      SLUICE_PORT: '0',
      SLUICE_STORAGE_DIR: storageDir,
      SLUICE_SLOT_NAME: db.slotName,
      SLUICE_PUBLICATION_NAME: db.publicationName,
      SLUICE_LOG_LEVEL: 'warn',
      SLUICE_WS_MAX_BUFFERED_BYTES: String(maxBufferedBytes),
    });
    const base = server.baseUrl;
    await waitUntilLive(base);
    const url = `${base}${PATHS.shape}`;
    const tap = tapWebSockets();
    const healthy = overSocket(url, WHOLE, tap);
    const official = new CountingFollower(url, { table: 'items' });
    const officialAudit = ChangeAudit.of(official.stream);
    followers.push(healthy, official);
    // Warm-up: the same writing with no slow client, so the server's memory has grown to what
    // serving these clients takes before the slow one comes.
    const batch = { rows: 50, noteBytes: 2_048, pauseMs: 0 };
    writer = new BatchWriter(db, batch);
    await until('16 MB written', () => (writer?.noteBytes ?? 0) > 16 * 2 ** 20, 60_000);
    await writer.stop();
    await assertMatchesPostgres(db, WHOLE, () => healthy.rows, 60_000);

    // The slow client subscribes like any other, eight times, takes the first frames, then
    // stops reading.
    const { handle, offset } = await readToEnd(base, { table: 'items' });
    const frames: WsServerFrame[] = [];
    slow = await RawWebSocket.connect(`${base}${PATHS.ws}`, {
      onText: (text) => frames.push(JSON.parse(text) as WsServerFrame),
    });
    const subscribe = (id: string): WsSubscribeFrame => ({
      type: WS_FRAME_TYPES.subscribe,
      id,
      params: { table: 'items' },
      handle,
      offset,
    });
    for (let i = 1; i <= 8; i++) slow.sendJson(subscribe(`slow-${i}`));
    await until(
      'the slow client subscribed',
      () => frames.filter((frame) => frame.type === WS_FRAME_TYPES.messages).length === 8,
    );
    slow.pause();

    const pid = server.child.pid;
    const rssBefore = await rssKb(pid);
    let rssMax = rssBefore;
    // Batches of 50 rows of ~2 kB: 100 kB per commit, 48 MB in all, which each of the slow
    // client's eight subscriptions would have to hold if nothing bounded them.
    const target = 48 * 2 ** 20;
    writer = new BatchWriter(db, batch);
    while (writer.noteBytes < target) {
      await sleep(100);
      rssMax = Math.max(rssMax, await rssKb(pid));
    }
    await writer.stop();
    // The others kept following throughout: they are caught up with what was written.
    await assertMatchesPostgres(db, WHOLE, () => healthy.rows, 60_000);
    await assertMatchesPostgres(db, WHOLE, () => [...official.rows.values()], 60_000);
    rssMax = Math.max(rssMax, await rssKb(pid));
    const grewMb = (rssMax - rssBefore) / 1024;
    const closedLine = /^sluice_ws_sockets_closed_total\{reason="backpressure"\} (\d+)$/m;
    const closedDuringWrites = (await metric(base, closedLine)) ?? 0;
    t.diagnostic(
      `${(writer.noteBytes / 2 ** 20).toFixed(0)} MB written in ${writer.batches} batches after the warm-up; server RSS ` +
        `${(rssBefore / 1024).toFixed(0)} MB before, at most ${(rssMax / 1024).toFixed(0)} MB ` +
        `(+${grewMb.toFixed(0)} MB); closed for backpressure during the writes: ${closedDuringWrites}`,
    );
    // Unbounded, the slow socket's eight subscriptions would hold 8 × 48 MB (more as JavaScript
    // strings); serving the other two clients the same 48 MB took about 25 MB more here.
    assert.ok(grewMb < 96, `the server's memory grew by ${grewMb.toFixed(0)} MB only`);

    // Each subscription holds at most one unsent batch: the socket is closed once a frame finds
    // the limit passed. During the writes that depends on the order frames left in; asking for
    // more (a subscribe, whose first frame comes once its catch-up read is done) settles it.
    // One more every half second, for as long as a loaded machine takes to read and send it.
    const askedAt = Date.now();
    for (let i = 9; Date.now() - askedAt < 30_000; i++) {
      if ((await metric(base, closedLine)) === 1) break;
      slow.sendJson(subscribe(`slow-${i}`));
      await sleep(500);
    }
    assert.equal(await metric(base, closedLine), 1, 'the slow socket closed for backpressure');

    // Reading again, the slow client gets what was sent before the limit, then the close code.
    slow.resume();
    await within(slow.closed, 30_000, 'the slow socket closes');
    assert.equal(slow.closeCode, WS_CLOSE_CODES.sendBufferFull);
    const readMb = slow.bytesRead / 2 ** 20;
    t.diagnostic(`the slow client read ${readMb.toFixed(1)} MB in all once it read again`);
    // Kernel buffers on both ends, the limit and one batch per subscription: a few MB.
    assert.ok(readMb < 32, `the server sent the slow socket ${readMb.toFixed(0)} MB, not 8 × 48`);

    await assertFollowersConverged(db, [['WebSocket, whole table', WHOLE, healthy]]);
    await assertOfficialConverged(db, official, officialAudit);
    assert.equal(tap.opened.length, 1, 'the healthy socket was never closed');
  } finally {
    await writer?.stop();
    slow?.destroy();
    for (const follower of followers) follower.close();
    await server?.stop('SIGKILL');
    await rm(storageDir, { recursive: true, force: true });
    await db.drop();
  }
});
