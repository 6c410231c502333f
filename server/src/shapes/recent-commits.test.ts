import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RecentCommits } from './recent-commits.js';

test('keeps commits for a while, oldest first, then forgets them', () => {
  let now = 1_000;
  const recent = new RecentCommits(500, 1_000, () => now);
  recent.add({ xid: 1, commitLsn: 10n });
  now += 300;
  recent.add({ xid: 2, commitLsn: 20n });
  assert.deepEqual(
    recent.list().map((c) => c.xid),
    [1, 2],
  );
  now += 300; // xid 1 is 600 ms old
  assert.deepEqual(
    recent.list().map((c) => c.xid),
    [2],
  );
  now += 1_000;
  assert.deepEqual(recent.list(), []);
});

test('keeps at most the newest `keepMax` commits, however many arrive', () => {
  const recent = new RecentCommits(60_000, 1_000, () => 0);
  for (let xid = 0; xid < 5_000; xid++) recent.add({ xid, commitLsn: BigInt(xid) });
  const kept = recent.list();
  assert.equal(kept.length, 1_000);
  assert.equal(kept[0]?.xid, 4_000);
  assert.equal(kept.at(-1)?.xid, 4_999);
});
