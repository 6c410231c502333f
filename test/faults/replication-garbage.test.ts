// The server does not crash when the replication library fails to read a message.
// pg-logical-replication reads each CopyData (its XLogData and keepalive headers, without bounds
// checks, then the plugin's parse()) inside a socket 'copyData' handler, where a throw would take
// the process down; Sluice's plugin wraps that handler, the stream ends with
// REPLICATION_UNDECODABLE, the server falls back briefly and reconnects from the slot. The
// garbage comes from a proxy on the replication connection only: whole CopyData messages slipped
// in between two real ones, so the protocol framing stays intact and only their content is wrong.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  startFaultProxy,
  startPostgres,
  type FaultProxy,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import { CountingFollower } from '../support/counting-follower.js';
import { fetchStatus, waitForStatus } from '../support/fallback-checks.js';
import { assertMatchesPostgres } from '../support/shape-oracle.js';
import { startSluice, waitUntilLive } from '../support/sluice-server.js';
import { Writer } from '../support/table-oracle.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, probe: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A backend protocol message: type byte, int32 length counting itself, body. */
function backendMessage(type: string, body: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length + 4);
  return Buffer.concat([Buffer.from(type), length, body]);
}

/**
 * A CopyData ('d') carrying XLogData ('w'): WAL start and end, send time (µs since 2000-01-01),
 * then `pgoutput` as the plugin's bytes. The positions are the current WAL end, as a real message
 * would carry, so only the pgoutput payload is wrong.
 */
async function xLogData(db: TestDatabase, pgoutput: Buffer): Promise<Buffer> {
  const { rows } = await db.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  const [high = '0', low = '0'] = (rows[0]?.lsn ?? '0/0').split('/');
  const lsn = (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`);
  const header = Buffer.alloc(25);
  header.write('w', 0);
  header.writeBigUInt64BE(lsn, 1);
  header.writeBigUInt64BE(lsn, 9);
  header.writeBigUInt64BE(BigInt(Date.now() - Date.UTC(2000, 0, 1)) * 1000n, 17);
  return backendMessage('d', Buffer.concat([header, pgoutput]));
}

function int32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeInt32BE(value);
  return buffer;
}

let pg: TestPostgres;
let proxy: FaultProxy;
before(async () => {
  pg = await startPostgres();
  const { hostname, port } = new URL(pg.url);
  proxy = await startFaultProxy({ host: hostname, port: Number(port) });
});
after(async () => {
  await proxy?.close();
  await pg?.stop();
});

test('undecodable pgoutput: no crash, fallback, back to live, nothing lost', async () => {
  // A throw in a socket handler is an uncaught exception. The test runner would fail the test
  // anyway; these listeners only record it (the runner has its own, so nothing else changes).
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);
  process.on('uncaughtExceptionMonitor', onUncaught);
  process.on('unhandledRejection', onUncaught);

  const db = await pg.createDatabase();
  await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
  // Negative ids: the writer counts up from 1.
  await db.query('INSERT INTO items SELECT -g, 0 FROM generate_series(1, 50) g');
  const { rows: relation } = await db.query<{ oid: number }>(
    "SELECT 'items'::regclass::oid::int AS oid",
  );
  const itemsOid = relation[0]?.oid ?? 0;
  assert.ok(itemsOid > 0);

  // Only replication goes through the proxy: queries and fallback snapshots go straight.
  const sluice = await startSluice(db, {
    replicationDatabaseUrl: proxy.url(db.url),
    replicationRetryMinMs: 200,
    replicationRetryMaxMs: 1_000,
  });
  const follower = new CountingFollower(`${sluice.baseUrl}/v1/shape`, { table: 'items' });
  const writer = new Writer(db, { pauseMs: 5 });
  try {
    await waitUntilLive(sluice.baseUrl);
    await waitForStatus(sluice.baseUrl, 'live');
    await assertMatchesPostgres(db, { table: 'items' }, () => [...follower.rows.values()]);

    let lastErrorAt: string | undefined;
    const pgoutput = (bytes: Buffer) => () => xLogData(db, bytes);
    const copyData = (bytes: Buffer) => () => Promise.resolve(backendMessage('d', bytes));
    const garbage: [string, () => Promise<Buffer>][] = [
      // Headers the library reads itself before parse().
      ['an XLogData too short for its header', copyData(Buffer.from('w\x00\x01'))],
      [
        'a keepalive too short for its header',
        copyData(Buffer.from('k\x00\x00\x00\x00\x00\x00\x00\x01')),
      ],
      ['an unknown pgoutput tag', pgoutput(Buffer.from('Z\x00\x01\x02\x03'))],
      // Insert for a relation no Relation message announced, cut off after the 'N'.
      [
        'a truncated insert of an unknown relation',
        pgoutput(Buffer.concat([Buffer.from('I'), int32(0x7ffffff0), Buffer.from('N')])),
      ],
      // Insert for items (announced on this stream, see below) with a tuple cut off mid-value.
      [
        'a truncated insert of a known relation',
        pgoutput(
          Buffer.concat([
            Buffer.from('I'),
            int32(itemsOid),
            Buffer.from('N\x00\x02t'),
            int32(100),
            Buffer.from('12'),
          ]),
        ),
      ],
    ];
    for (const [what, message] of garbage) {
      // The stream that is live now has decoded an insert of items (so the parser knows the
      // relation), and the previous stream's connection is gone: exactly one gets the garbage.
      const marker = writer.nextId + 2;
      await follower.waitFor((rows) => rows.has(`"public"."items"/"${marker}"`));
      await waitFor('one replication connection', () => proxy.connectionCount === 1);
      assert.equal((await fetchStatus(sluice.baseUrl)).status, 'live', what);

      assert.equal(proxy.injectToClients(await message()), 1, what);

      await waitFor(`the stream to fail on ${what}`, async () => {
        const error = (await fetchStatus(sluice.baseUrl)).replication.last_error;
        return error !== null && error.at !== lastErrorAt;
      });
      const { replication } = await fetchStatus(sluice.baseUrl);
      assert.equal(replication.last_error?.code, 'REPLICATION_UNDECODABLE', what);
      lastErrorAt = replication.last_error?.at;
      // Still serving meanwhile: the process is alive and answers.
      assert.equal((await fetch(`${sluice.baseUrl}/v1/health`)).status, 200, what);

      const { body } = await waitForStatus(sluice.baseUrl, 'live', 15_000);
      assert.equal(body.replication.state, 'streaming', what);
      assert.equal(body.replication.last_error?.at, lastErrorAt, `${what}: no other failure`);
    }

    await writer.stop();
    await assertMatchesPostgres(db, { table: 'items' }, () => [...follower.rows.values()], 30_000);
    assert.equal(follower.mustRefetches, 0, 'no 409');
    assert.deepEqual(follower.duplicates(), [], 'no change twice');
    assert.deepEqual(follower.errors, []);

    const metrics = await (await fetch(`${sluice.baseUrl}/metrics`)).text();
    assert.match(metrics, /sluice_state_transitions_total\{from="live",to="fallback"\} 5/);
    assert.match(metrics, /sluice_state_transitions_total\{from="fallback",to="live"\} 5/);
    assert.equal((await fetch(`${sluice.baseUrl}/v1/health`)).status, 200);
    assert.deepEqual(uncaught, [], 'no uncaught exception');
  } finally {
    process.off('uncaughtExceptionMonitor', onUncaught);
    process.off('unhandledRejection', onUncaught);
    await writer.stop();
    follower.close();
    await sluice.close();
    await db.drop();
  }
});
