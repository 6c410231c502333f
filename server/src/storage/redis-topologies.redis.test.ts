// The Redis backend through Sentinel and on a Cluster, against real redis-servers (Debian's)
// started by the harness: the shared storage contract suite on each, plus what each topology
// adds (the master found through the Sentinel; a shape's keys in one slot, the list in another).
// Skipped with a reason when redis-server is missing, except with SLUICE_REQUIRE_REDIS=1 (CI).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import pino from 'pino';
import {
  redisSkipReason,
  startRedisCluster,
  startRedisSentinel,
  type TestRedisCluster,
  type TestRedisSentinel,
} from '@sluice/harness';
import { ChunkCache } from './chunk-cache.js';
import { RedisShapeStorage, type RedisShapeStorageOptions } from './redis-shape-storage.js';
import { txGroup, walkEntries } from './shape-log-testing.js';
import type { ShapeStorage } from './shape-storage.js';
import { CONTRACT_CHUNK_BYTES, describeShapeStorageContract } from './shape-storage-contract.js';

const skip = redisSkipReason();
if (skip) console.warn(`redis-topologies.redis.test.ts skipped: ${skip}`);

let sentinel: TestRedisSentinel;
let cluster: TestRedisCluster;
if (!skip) {
  before(async () => {
    [sentinel, cluster] = await Promise.all([
      startRedisSentinel({ name: 'sluicegroup' }),
      startRedisCluster(),
    ]);
  });
  after(() => Promise.all([sentinel?.destroy(), cluster?.destroy()]));
}

let prefixes = 0;
const freshPrefix = () => `topo${++prefixes}`;

type Topology = Pick<RedisShapeStorageOptions, 'url' | 'sentinels' | 'sentinelName' | 'cluster'>;

const topologies: Record<string, () => Topology> = {
  // The URL's host and port lead nowhere: only the Sentinel can have found the master.
  sentinel: () => ({
    url: 'redis://192.0.2.1:1/0',
    sentinels: sentinel.sentinels,
    sentinelName: sentinel.name,
  }),
  cluster: () => ({ url: cluster.url, cluster: true }),
};

function connect(
  topology: Topology,
  keyPrefix: string,
  chunkBytes = CONTRACT_CHUNK_BYTES,
): Promise<RedisShapeStorage> {
  return RedisShapeStorage.connect({
    ...topology,
    keyPrefix,
    chunkBytes,
    chunkCache: new ChunkCache(1 << 20),
    healthCheckIntervalMs: 500,
    commandTimeoutMs: 1_000,
    log: pino({ level: 'silent' }),
  });
}

/** Waits until `check` resolves true, failing with `what` after `ms`; returns the time it took. */
async function waitFor(what: string, ms: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > ms) assert.fail(`${what} not within ${ms} ms`);
    await sleep(50);
  }
  return Date.now() - start;
}

if (skip) {
  test('Redis Sentinel and Cluster storage', { skip }, () => undefined);
} else {
  for (const [name, topology] of Object.entries(topologies)) {
    describeShapeStorageContract(`redis ${name}`, async () => {
      const keyPrefix = freshPrefix();
      const opened: ShapeStorage[] = [await connect(topology(), keyPrefix)];
      return {
        storage: opened[0]!,
        async reopen() {
          await opened.at(-1)!.close();
          opened.push(await connect(topology(), keyPrefix));
          return opened.at(-1)!;
        },
        async cleanup() {
          for (const storage of opened) await storage.close();
        },
      };
    });
  }

  describe('redis topologies: where the keys go', () => {
    test('through the Sentinel, the logs are written to its master', async () => {
      const prefix = freshPrefix();
      const storage = await connect(topologies.sentinel!(), prefix);
      const raw = new Redis(sentinel.master.url);
      try {
        assert.deepEqual(storage.health(), { backend: 'redis', state: 'up', breaker: 'closed' });
        const log = await storage.createLog('s1');
        log.append(txGroup(1, 3));
        await log.flush();
        assert.equal(await raw.llen(`{${prefix}:s1}:chunk:1`), 3);
        assert.deepEqual(await raw.smembers(`${prefix}:shapes`), ['s1']);
        await log.close();
      } finally {
        raw.disconnect();
        await storage.close();
      }
    });

    test('after a Sentinel failover, flushes go to the new master and nothing flushed before is lost', async () => {
      const group = await startRedisSentinel({ name: 'failover', replica: true });
      const prefix = freshPrefix();
      const storage = await connect(
        { url: 'redis://192.0.2.1:1', sentinels: group.sentinels, sentinelName: group.name },
        prefix,
        2_000,
      );
      const oldMaster = new Redis(group.master.url);
      const newMaster = new Redis(group.replica!.url);
      const asker = new Redis(group.sentinel.url);
      try {
        const log = await storage.createLog('f1');
        log.append(txGroup(1, 5));
        await log.flush();
        // Replication is asynchronous: the failover must not start before the replica has it.
        assert.equal(await oldMaster.wait(1, 5_000), 1);
        // The Sentinel refuses (NOGOODSLAVE) until it has read the replica's own INFO.
        await waitFor('the failover started', 15_000, () =>
          asker.call('SENTINEL', 'FAILOVER', group.name).then(
            () => true,
            () => false,
          ),
        );
        await waitFor('the replica promoted', 15_000, async () => {
          const [, port] = (await asker.call(
            'SENTINEL',
            'GET-MASTER-ADDR-BY-NAME',
            group.name,
          )) as string[];
          return Number(port) === group.replica!.port;
        });
        // Until the Sentinel has turned the old master into a replica, it still takes writes,
        // which its demotion then discards (docs/operations.md, "Sentinel and Cluster").
        await waitFor('the old master demoted', 15_000, async () =>
          (await oldMaster.info('replication')).includes('role:slave'),
        );
        let tx = 1;
        const took = await waitFor('a flush on the new master', 15_000, async () => {
          log.append(txGroup(++tx, 1));
          return log.flush().then(
            () => true,
            () => false,
          );
        });
        const expected = Array.from({ length: tx }, (_, i) => txGroup(i + 1, i === 0 ? 5 : 1))
          .flat()
          .map((e) => e.json);
        assert.deepEqual(await walkEntries(log), expected);
        await log.close();
        assert.equal(await newMaster.llen(`{${prefix}:f1}:chunk:1`), expected.length);
        console.log(`sentinel failover: flushing again ${took} ms after the demotion`);
      } finally {
        oldMaster.disconnect();
        newMaster.disconnect();
        asker.disconnect();
        await storage.close();
        await group.destroy();
      }
    });

    test('on the Cluster, a shape lives in its hash tag slot and is removed whole', async () => {
      const prefix = freshPrefix();
      const storage = await connect(topologies.cluster!(), prefix, 100);
      const raw = new Cluster([{ host: '127.0.0.1', port: cluster.nodes[0]!.port }]);
      try {
        const handles = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6'];
        for (const handle of handles) {
          await storage.writeMetadata(handle, `{"h":"${handle}"}`);
          const log = await storage.createLog(handle);
          log.append(txGroup(1, 10));
          await log.flush();
          await log.close();
        }
        const slots = await Promise.all(
          handles.map((handle) => raw.cluster('KEYSLOT', `{${prefix}:${handle}}`)),
        );
        assert.ok(new Set(slots).size > 1, `the shapes spread over slots: ${slots.join(' ')}`);
        assert.deepEqual((await storage.listShapes()).sort(), handles);
        const reopened = await storage.openLog('c4');
        assert.deepEqual(
          await walkEntries(reopened),
          txGroup(1, 10).map((e) => e.json),
        );
        await reopened.close();
        await storage.removeShape('c4');
        assert.equal(await raw.exists(`{${prefix}:c4}:meta`, `{${prefix}:c4}:log`), 0);
        assert.deepEqual((await storage.listShapes()).sort(), ['c1', 'c2', 'c3', 'c5', 'c6']);
      } finally {
        raw.disconnect();
        await storage.close();
      }
    });
  });
}
