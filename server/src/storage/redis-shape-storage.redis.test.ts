// The Redis backend against a real redis-server (Debian's), started by the harness: the storage
// behaviour suite, then what only Redis has: its keys, the idempotent flush, and resilience
// (Redis killed, restarted, black-holed). Skipped with a reason when redis-server is missing,
// except with SLUICE_REQUIRE_REDIS=1 (CI), where that fails.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pino from 'pino';
import { redisSkipReason, startFaultProxy, startRedis, type TestRedis } from '@sluice/harness';
import { ChunkCache } from './chunk-cache.js';
import { RedisShapeStorage, type RedisShapeStorageOptions } from './redis-shape-storage.js';
import { txGroup, walkEntries } from './shape-log-testing.js';
import type { LogEntry, ShapeStorage } from './shape-storage.js';
import { CONTRACT_CHUNK_BYTES, describeShapeStorageContract } from './shape-storage-contract.js';

const skip = redisSkipReason();
if (skip) console.warn(`redis-shape-storage.redis.test.ts skipped: ${skip}`);

let redis: TestRedis;
if (!skip) {
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.destroy());
}

let prefixes = 0;
const freshPrefix = () => `test${++prefixes}`;
const silent = pino({ level: 'silent' });

function connect(
  url: string,
  keyPrefix: string,
  options: Partial<RedisShapeStorageOptions> = {},
): Promise<RedisShapeStorage> {
  return RedisShapeStorage.connect({
    url,
    keyPrefix,
    chunkBytes: 10_000,
    chunkCache: new ChunkCache(1 << 20),
    healthCheckIntervalMs: 1_000,
    commandTimeoutMs: 1_000,
    log: silent,
    ...options,
  });
}

/** Waits until `check` holds, failing with `what` after `ms`; returns the time it took. */
async function waitFor(what: string, ms: number, check: () => boolean): Promise<number> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > ms) assert.fail(`${what} not within ${ms} ms`);
    await sleep(20);
  }
  return Date.now() - start;
}

if (skip) {
  test('Redis storage', { skip }, () => undefined);
} else {
  describeShapeStorageContract('redis', async () => {
    const keyPrefix = freshPrefix();
    const options = { chunkBytes: CONTRACT_CHUNK_BYTES };
    const opened: ShapeStorage[] = [await connect(redis.url, keyPrefix, options)];
    return {
      storage: opened[0]!,
      async reopen() {
        await opened.at(-1)!.close();
        opened.push(await connect(redis.url, keyPrefix, options));
        return opened.at(-1)!;
      },
      async cleanup() {
        for (const storage of opened) await storage.close();
      },
    };
  });

  describe('redis: a log one server writes and others read', () => {
    test("refresh() takes in appends, seals and new chunks; reads equal the writer's", async () => {
      const keyPrefix = freshPrefix();
      const options = { chunkBytes: 600 };
      const writer = await connect(redis.url, keyPrefix, options);
      const reader = await connect(redis.url, keyPrefix, options);
      try {
        const written = await writer.createLog('h1');
        written.append(txGroup(1, 2));
        await written.flush();
        const read = await reader.openLog('h1');
        assert.deepEqual(await walkEntries(read), await walkEntries(written));
        // Within the open chunk, then across many seals (entries of ~70 B, chunks of 600 B).
        for (let tx = 2; tx < 40; tx++) {
          written.append(txGroup(tx, tx % 3 === 0 ? 5 : 1));
          if (tx % 4 === 0) {
            await written.flush();
            await read.refresh();
            assert.deepEqual(read.durableOffset, written.durableOffset, `after tx ${tx}`);
            assert.deepEqual(await walkEntries(read), await walkEntries(written), `tx ${tx}`);
            assert.equal(read.sizeBytes, written.sizeBytes);
          }
        }
        // Nothing new: a refresh changes nothing.
        await read.refresh();
        assert.deepEqual(await walkEntries(read), await walkEntries(written));
      } finally {
        await writer.close();
        await reader.close();
      }
    });

    test('refresh() of a log that was removed, or cut below what was read, fails', async () => {
      const keyPrefix = freshPrefix();
      const options = { chunkBytes: 300 };
      const writer = await connect(redis.url, keyPrefix, options);
      const reader = await connect(redis.url, keyPrefix, options);
      try {
        const written = await writer.createLog('cut');
        for (let tx = 1; tx <= 12; tx++) written.append(txGroup(tx, 2));
        await written.flush();
        const read = await reader.openLog('cut');
        await written.truncateAfter({ tx: 2n, op: 2 });
        written.append(txGroup(20, 2));
        await written.flush();
        await assert.rejects(read.refresh(), /vanished|invalid/);

        const gone = await reader.openLog('cut');
        await written.destroy();
        await writer.removeShape('cut');
        await assert.rejects(gone.refresh(), { name: 'ShapeLogMissingError' });
      } finally {
        await writer.close();
        await reader.close();
      }
    });

    test('claimWriter() fences the server that wrote before: its flushes are refused, nothing of them lands', async () => {
      const keyPrefix = freshPrefix();
      const [before, after] = [
        await connect(redis.url, keyPrefix),
        await connect(redis.url, keyPrefix),
      ];
      try {
        await before.claimWriter();
        const stale = await before.createLog('fenced');
        stale.append(txGroup(1, 2));
        await stale.flush();
        // Another server takes over (it holds the replication lock now); the first does not know.
        await after.claimWriter();
        const taken = await after.openLog('fenced');
        stale.append(txGroup(2, 2));
        await assert.rejects(stale.flush(), /SLUICE_FENCED/);
        assert.deepEqual(
          await walkEntries(await after.openLog('fenced')),
          await walkEntries(taken),
        );
        // The new writer appends where the old one's last accepted flush ended.
        taken.append(txGroup(3, 2));
        await taken.flush();
        const stored = await walkEntries(await after.openLog('fenced'));
        assert.deepEqual(
          stored,
          [...txGroup(1, 2), ...txGroup(3, 2)].map((e) => e.json),
        );
      } finally {
        await before.close();
        await after.close();
      }
    });

    test('messages on the channel reach every server sharing the storage', async () => {
      const keyPrefix = freshPrefix();
      const [one, two] = [await connect(redis.url, keyPrefix), await connect(redis.url, keyPrefix)];
      const other = await connect(redis.url, freshPrefix());
      try {
        const received: string[][] = [[], [], []];
        [one, two, other].forEach((storage, i) =>
          storage.channel.onMessage((message) => received[i]!.push(message)),
        );
        // Subscribing happens in the background: publish until both have it.
        await waitFor(
          'the subscriptions',
          5_000,
          () =>
            (received[0]!.length > 0 && received[1]!.length > 0) ||
            (void one.channel.publish('ping'), false),
        );
        await one.channel.publish('hello');
        await waitFor(
          'hello on both',
          5_000,
          () => received[0]!.includes('hello') && received[1]!.includes('hello'),
        );
        assert.deepEqual(received[2], [], 'another prefix is another channel');
      } finally {
        for (const storage of [one, two, other]) await storage.close();
      }
    });
  });

  describe('redis: keys, flushes and resilience', () => {
    test('every key of a shape carries its hash tag; the shape list and records do not', async () => {
      const prefix = freshPrefix();
      const storage = await connect(redis.url, prefix, { chunkBytes: 100 });
      const raw = new Redis(redis.url);
      try {
        await storage.writeMetadata('a1', '{}');
        const log = await storage.createLog('a1');
        log.append(txGroup(1, 10));
        await log.close();
        await storage.writeRecord('state', '{}');
        const keys = (await raw.keys(`*${prefix}*`)).sort();
        assert.deepEqual(
          keys.filter((key) => !key.startsWith(`{${prefix}:a1}:`)),
          [`${prefix}:record:state`, `${prefix}:shapes`],
        );
        assert.ok(keys.includes(`{${prefix}:a1}:chunk:1`), keys.join(' '));
        assert.ok(keys.length >= 7, `${keys.length} keys: ${keys.join(' ')}`);
        assert.equal(log.location, `{${prefix}:a1}`);
        await storage.removeShape('a1');
        assert.deepEqual((await raw.keys(`*${prefix}*`)).sort(), [`${prefix}:record:state`]);
      } finally {
        raw.disconnect();
        await storage.close();
      }
    });

    test('a flush whose reply was lost is sent again and stores its entries once', async () => {
      const proxy = await startFaultProxy({ host: '127.0.0.1', port: redis.port });
      const prefix = freshPrefix();
      const storage = await connect(proxy.url(redis.url), prefix, { commandTimeoutMs: 300 });
      const raw = new Redis(redis.url);
      try {
        const log = await storage.createLog('lost');
        log.append(txGroup(1, 3));
        await log.flush();
        // The command reaches Redis after the client stopped waiting for it.
        proxy.setMode('delay', { delayMs: 800 });
        log.append(txGroup(2, 3));
        await assert.rejects(log.flush(), { name: 'RedisUnavailableError' });
        await sleep(1_200);
        assert.equal(await raw.llen(`{${prefix}:lost}:chunk:1`), 6, 'the first try was applied');
        proxy.setMode('pass');
        log.append(txGroup(3, 1));
        await waitFor('a flush through the proxy', 10_000, () => storage.health().state === 'up');
        await log.flush();
        const expected = [...txGroup(1, 3), ...txGroup(2, 3), ...txGroup(3, 1)].map((e) => e.json);
        assert.deepEqual(await walkEntries(log), expected);
        await log.close();
        const reopened = await storage.openLog('lost');
        assert.deepEqual(await walkEntries(reopened), expected);
        await reopened.close();
      } finally {
        raw.disconnect();
        await storage.close();
        await proxy.close();
      }
    });

    test('a log that Redis shows was changed behind its back fails and must be reopened', async () => {
      const prefix = freshPrefix();
      const storage = await connect(redis.url, prefix);
      const raw = new Redis(redis.url);
      try {
        const log = await storage.createLog('moved');
        log.append(txGroup(1, 2));
        await log.flush();
        await raw.rpush(`{${prefix}:moved}:chunk:1`, '5_0 {"other":"writer"}');
        log.append(txGroup(2, 1));
        await assert.rejects(log.flush(), /SLUICE_LOG_MISMATCH chunk 1 holds 3 entries/);
        assert.throws(() => log.append(txGroup(3, 1)), /failed; reopen it/);
        await assert.rejects(log.read('before-all'), /failed; reopen it/);
        assert.deepEqual(storage.health(), { backend: 'redis', state: 'up', breaker: 'closed' });
        const reopened = await storage.openLog('moved');
        assert.equal((await walkEntries(reopened)).length, 3);
        await reopened.close();
      } finally {
        raw.disconnect();
        await storage.close();
      }
    });

    test('Redis killed and restarted during writes: flushes fail, the breaker opens, then all comes back by itself', async () => {
      // Its own server with appendfsync always: every acknowledged flush survives SIGKILL.
      const own = await startRedis({ appendfsync: 'always' });
      const prefix = freshPrefix();
      const storage = await connect(own.url, prefix, {
        healthCheckIntervalMs: 200,
        commandTimeoutMs: 500,
        circuitFailureThreshold: 3,
        circuitResetMs: 500,
        chunkBytes: 2_000,
      });
      try {
        const log = await storage.createLog('writes');
        const appended: LogEntry[] = [];
        let acknowledged: string[] = [];
        const failures: unknown[] = [];
        let stop = false;
        const writer = (async () => {
          for (let tx = 1; !stop; tx++) {
            const group = txGroup(tx, 3);
            log.append(group);
            appended.push(...group);
            try {
              const upTo = appended.length;
              await log.flush();
              acknowledged = appended.slice(0, upTo).map((e) => e.json);
            } catch (error) {
              failures.push(error);
            }
            await sleep(10);
          }
        })();
        await waitFor('writes', 5_000, () => acknowledged.length > 300);
        await own.kill();
        await waitFor('a failed flush', 5_000, () => failures.length > 0);
        assert.match(String(failures[0]), /RedisUnavailableError: Redis failed/);
        await waitFor('the breaker opening', 5_000, () => storage.health().breaker === 'open');
        assert.equal(storage.health().state, 'down');
        const whileDown = acknowledged.length;
        await sleep(500);
        assert.equal(acknowledged.length, whileDown, 'no flush succeeds while Redis is down');
        assert.match(String(failures.at(-1)), /circuit breaker is open|Redis failed/);

        await own.start();
        const back = await waitFor('flushes again', 10_000, () => acknowledged.length > whileDown);
        assert.deepEqual(storage.health(), { backend: 'redis', state: 'up', breaker: 'closed' });
        stop = true;
        await writer;
        await log.flush();
        const all = appended.map((e) => e.json);
        assert.deepEqual(await walkEntries(log), all);
        await log.close();
        // Reopened from Redis' own files: every entry once, none lost, in order.
        await own.kill();
        await own.start();
        await waitFor('up again', 10_000, () => storage.health().state === 'up');
        const reopened = await storage.openLog('writes');
        assert.deepEqual(await walkEntries(reopened), all);
        assert.deepEqual(reopened.lastOffset, appended.at(-1)!.offset);
        await reopened.close();
        console.log(`redis restart: flushing again ${back} ms after the restart`);
      } finally {
        await storage.close();
        await own.destroy();
      }
    });

    test('a black-holed Redis is noticed within the health-check interval plus the command timeout', async () => {
      const proxy = await startFaultProxy({ host: '127.0.0.1', port: redis.port });
      const [intervalMs, timeoutMs] = [500, 500];
      const storage = await connect(proxy.url(redis.url), freshPrefix(), {
        healthCheckIntervalMs: intervalMs,
        commandTimeoutMs: timeoutMs,
      });
      try {
        const log = await storage.createLog('idle');
        log.append(txGroup(1, 1));
        await log.flush();
        assert.equal(storage.health().state, 'up');
        proxy.setMode('blackhole');
        // Idle: only the health PING can notice. Margin for a loaded machine.
        const noticed = await waitFor('down', 10_000, () => storage.health().state === 'down');
        assert.ok(noticed <= intervalMs + timeoutMs + 1_000, `noticed after ${noticed} ms`);
        log.append(txGroup(2, 1));
        const started = Date.now();
        await assert.rejects(log.flush(), { name: 'RedisUnavailableError' });
        assert.ok(Date.now() - started < timeoutMs + 1_000, 'a flush does not hang');
        proxy.setMode('pass');
        await waitFor('up again', 10_000, () => storage.health().state === 'up');
        await log.flush();
        assert.deepEqual(
          await walkEntries(log),
          [...txGroup(1, 1), ...txGroup(2, 1)].map((e) => e.json),
        );
        await log.close();
        console.log(`redis black hole noticed after ${noticed} ms`);
      } finally {
        await storage.close();
        await proxy.close();
      }
    });

    test('a Redis down at startup is waited for in the background', async () => {
      const own = await startRedis();
      await own.stop();
      const storage = await connect(own.url, freshPrefix(), { healthCheckIntervalMs: 200 });
      try {
        assert.equal(storage.health().state, 'down');
        await assert.rejects(storage.listShapes(), { name: 'RedisUnavailableError' });
        await own.start();
        await waitFor('up', 10_000, () => storage.health().state === 'up');
        assert.deepEqual(await storage.listShapes(), []);
        assert.deepEqual((await storage.createLog('x')).lastOffset, undefined);
      } finally {
        await storage.close();
        await own.destroy();
      }
    });
  });
}
