import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { ChunkCache } from './chunk-cache.js';
import { DiskShapeLog } from './disk-shape-log.js';
import { makeRoot } from './disk-shape-log-testing.js';
import { entry, walkEntries } from './shape-log-testing.js';

const root = await makeRoot();
after(() => rm(root, { recursive: true, force: true }));

/** A log of sealed chunks of about `chunkBytes` each, read once from start to end. */
async function readLog(name: string, cache: ChunkCache): Promise<DiskShapeLog> {
  const log = await DiskShapeLog.create(path.join(root, name), {
    chunkBytes: 1_000,
    chunkCache: cache,
  });
  for (let op = 0; op < 100; op++) log.append([entry(0, op, 'v'.repeat(100))]);
  await log.flush();
  await log.close();
  const reopened = await DiskShapeLog.open(path.join(root, name), {
    chunkBytes: 1_000,
    chunkCache: cache,
  });
  assert.equal((await walkEntries(reopened)).length, 100);
  return reopened;
}

test('one cache for every log: its bytes stay within the bound however many logs are read', async () => {
  const cache = new ChunkCache(5_000);
  const logs: DiskShapeLog[] = [];
  for (let i = 0; i < 20; i++) {
    logs.push(await readLog(`shared-${i}`, cache));
    assert.ok(cache.bytes <= 5_000, `${cache.bytes} bytes cached after ${i + 1} logs`);
  }
  assert.ok(cache.bytes > 2_000, 'the cache is used');
  for (const log of logs) await log.close();
});

test('a closed log leaves nothing in the shared cache', async () => {
  const cache = new ChunkCache(1_000_000);
  const log = await readLog('closed', cache);
  assert.ok(cache.bytes > 0);
  await log.close();
  assert.equal(cache.bytes, 0);
});

test('a cache of 0 bytes keeps nothing and reads still work', async () => {
  const cache = new ChunkCache(0);
  const log = await readLog('uncached', cache);
  assert.equal(cache.bytes, 0);
  await log.close();
});
