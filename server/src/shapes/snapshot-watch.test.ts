import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SnapshotWatch } from './snapshot-watch.js';

/** A reader whose every call is counted and answered when the test says so. */
function controlledReader() {
  const pending: ((snapshot: string) => void)[] = [];
  return {
    read: () => new Promise<string>((resolve) => pending.push(resolve)),
    calls: () => pending.length,
    answer: (index: number, snapshot: string) => pending[index]!(snapshot),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('one read serves every waiter; only readings started after a call answer it', async () => {
  // The watch's timer does not hold the process open (held requests do); here, this does.
  const keepAlive = setInterval(() => undefined, 1_000);
  const reader = controlledReader();
  const watch = new SnapshotWatch(reader.read, 5);
  const never = new AbortController().signal;
  const first = watch.next(never);
  assert.equal(reader.calls(), 1, 'the first waiter starts a read');
  // Waiters arriving while that read runs are answered by the next one, together.
  const second = watch.next(never);
  const third = watch.next(never);
  let early: string | undefined;
  void second.then((reading) => (early = reading?.snapshot));
  reader.answer(0, '10:12:10');
  assert.equal((await first)?.snapshot, '10:12:10');
  await tick();
  assert.equal(early, undefined, 'not answered by a read that started before it');
  assert.equal(watch.latest()?.snapshot, '10:12:10');
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(reader.calls(), 2, 'one more read, an interval later, for both');
  reader.answer(1, '12:12:');
  assert.equal((await second)?.snapshot, '12:12:');
  assert.equal((await third)?.snapshot, '12:12:');
  // Nobody waits: no more reads.
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(reader.calls(), 2);
  clearInterval(keepAlive);
});

test('an aborted wait resolves undefined; a failed read is skipped', async () => {
  let calls = 0;
  const watch = new SnapshotWatch(() => {
    calls++;
    return calls === 1 ? Promise.reject(new Error('down')) : Promise.resolve('5:5:');
  }, 5);
  const stop = new AbortController();
  const aborted = watch.next(stop.signal);
  stop.abort();
  assert.equal(await aborted, undefined);
  assert.equal(await watch.next(stop.signal), undefined, 'already aborted');
  // The watch's timer does not hold the process open (held requests do); here, this does.
  const keepAlive = setInterval(() => undefined, 1_000);
  const reading = await watch.next(new AbortController().signal);
  clearInterval(keepAlive);
  assert.equal(reading?.snapshot, '5:5:');
  assert.ok(calls >= 2, 'the failed read was retried');
});
