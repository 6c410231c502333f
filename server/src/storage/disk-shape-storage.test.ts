import assert from 'node:assert/strict';
import { readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { ChunkCache } from './chunk-cache.js';
import { makeRoot } from './disk-shape-log-testing.js';
import { DiskShapeStorage } from './disk-shape-storage.js';
import { CONTRACT_CHUNK_BYTES, describeShapeStorageContract } from './shape-storage-contract.js';
import { txGroup, walkEntries } from './shape-log-testing.js';

function diskStorage(storageDir: string): DiskShapeStorage {
  return new DiskShapeStorage({
    storageDir,
    chunkBytes: CONTRACT_CHUNK_BYTES,
    // Smaller than a few chunks: reads after a reopen go to the files.
    chunkCache: new ChunkCache(2 * CONTRACT_CHUNK_BYTES),
  });
}

describeShapeStorageContract('disk storage', async () => {
  const storageDir = await makeRoot();
  return {
    storage: diskStorage(storageDir),
    reopen: () => Promise.resolve(diskStorage(storageDir)),
    cleanup: () => rm(storageDir, { recursive: true, force: true }),
  };
});

test('disk storage keeps the layout of earlier versions: shapes/<handle>/, shape.json, <record>.json', async () => {
  const storageDir = await makeRoot();
  try {
    const storage = diskStorage(storageDir);
    const log = await storage.createLog('abc-1');
    await storage.writeMetadata('abc-1', '{"handle":"abc-1"}');
    log.append(txGroup(1, 2));
    await log.close();
    await storage.writeRecord('continuity', '{"systemId":"7","timeline":1}');
    assert.equal(log.location, path.join(storageDir, 'shapes', 'abc-1'));
    assert.deepEqual((await readdir(storageDir)).sort(), ['continuity.json', 'journal', 'shapes']);
    const shapeDir = path.join(storageDir, 'shapes', 'abc-1');
    assert.deepEqual((await readdir(shapeDir)).sort(), [
      'chunk-000001.log',
      'chunks.json',
      'shape.json',
    ]);
    assert.equal(await readFile(path.join(shapeDir, 'shape.json'), 'utf8'), '{"handle":"abc-1"}');
    const continuity = await readFile(path.join(storageDir, 'continuity.json'), 'utf8');
    assert.equal(continuity, '{"systemId":"7","timeline":1}');
    assert.deepEqual(storage.health(), { backend: 'disk', state: 'up', breaker: 'closed' });

    // A folder left by a creation cut short (no metadata) is listed, so that it gets removed.
    await diskStorage(storageDir).createLog('cut-2');
    assert.deepEqual((await storage.listShapes()).sort(), ['abc-1', 'cut-2']);
    assert.equal(await storage.readMetadata('cut-2'), undefined);
    await storage.removeShape('cut-2');
    assert.deepEqual(await storage.listShapes(), ['abc-1']);
    const reopened = await storage.openLog('abc-1');
    assert.equal((await walkEntries(reopened)).length, 2);
    await reopened.close();
  } finally {
    await rm(storageDir, { recursive: true, force: true });
  }
});
