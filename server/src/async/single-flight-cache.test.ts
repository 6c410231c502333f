import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { SingleFlightCache } from './single-flight-cache.js';

/** A cache over string keys whose builds are counted. */
function countedCache() {
  const cache = new SingleFlightCache<object, string, string>((a, b) => a === b);
  let builds = 0;
  const build = (value: string) => () => {
    builds++;
    return Promise.resolve(value);
  };
  return { cache, build, builds: () => builds };
}

test('callers asking with an equal key while it is built share one build', async () => {
  const { cache, build, builds } = countedCache();
  const owner = {};
  const first = cache.get(owner, 'k', build('a'));
  const second = cache.get(owner, 'k', build('b'));
  assert.equal(second, first);
  assert.equal(await second, 'a');
  assert.equal(builds(), 1);
});

test('the value is shared until the turn after it is built, then built anew', async () => {
  const { cache, build, builds } = countedCache();
  const owner = {};
  const first = cache.get(owner, 'k', build('a'));
  await first;
  // Still this turn (a continuation of the build): the callers woken with the first one.
  assert.equal(cache.get(owner, 'k', build('b')), first);
  await nextTurn();
  assert.equal(await cache.get(owner, 'k', build('c')), 'c');
  assert.equal(builds(), 2);
});

test('another key or another owner builds anew; the newer key replaces the older', async () => {
  const { cache, build, builds } = countedCache();
  const owner = {};
  const other = {};
  assert.equal(await cache.get(owner, 'k1', build('a')), 'a');
  assert.equal(await cache.get(owner, 'k2', build('b')), 'b');
  assert.equal(await cache.get(other, 'k2', build('c')), 'c');
  assert.equal(await cache.get(owner, 'k1', build('d')), 'd');
  assert.equal(builds(), 4);
});

test('a failed build is not kept for the next caller', async () => {
  const cache = new SingleFlightCache<object, string, string>((a, b) => a === b);
  const owner = {};
  const failed = cache.get(owner, 'k', () => Promise.reject(new Error('gone')));
  // Asked while it is being built: the caller shares its failure.
  const sharer = cache.get(owner, 'k', () => Promise.resolve('unused'));
  assert.equal(sharer, failed);
  await assert.rejects(failed, /gone/);
  // The same turn as the failure: the next caller builds anew.
  assert.equal(await cache.get(owner, 'k', () => Promise.resolve('again')), 'again');
});
