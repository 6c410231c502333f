import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MoveTags } from './move-tags.js';

// Sequences as a subquery shape's log would carry them (Electric 1.7's wire form): every change
// has one tag per disjunct and one active condition per position.

const sorted = (keys: string[]) => [...keys].sort();

test('a OR b: a move-out deletes only the rows no other disjunct keeps', () => {
  // `a IN (SELECT …) OR b = 1`: position 0 is the subquery, position 1 is `b = 1`.
  const tags = new MoveTags();
  tags.change('k1', { tags: ['h1/', '/1'], active_conditions: [true, true] }); // a=h1, b=1
  tags.change('k2', { tags: ['h1/', '/1'], active_conditions: [true, false] }); // a=h1, b=2
  tags.change('k3', { tags: ['h2/', '/1'], active_conditions: [true, false] }); // a=h2, b=2
  tags.change('k4', { tags: ['h3/', '/1'], active_conditions: [false, true] }); // a=h3 (out), b=1

  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'h1' }]), ['k2']);
  assert.equal(tags.tagsOf('k2'), undefined, 'a row gone is forgotten');
  assert.deepEqual(tags.activeConditionsOf('k1'), [false, true], 'k1 stays for b = 1');
  assert.deepEqual(tags.activeConditionsOf('k3'), [true, false], 'another value is untouched');

  // The same value again finds k1 still indexed, and it still has b = 1.
  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'h1' }]), []);
  // Position 1 going too leaves k1 (only its b = 1 held it) and k4 (a=h3 was out already).
  assert.deepEqual(sorted(tags.moveOut([{ pos: 1, value: '1' }])), ['k1', 'k4']);
  assert.deepEqual(tags.activeConditionsOf('k3'), [true, false]);
});

test('a move-in turns the position back on, so a later move-out of the other one keeps the row', () => {
  const tags = new MoveTags();
  tags.change('k1', { tags: ['h1/', '/1'], active_conditions: [true, true] });
  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'h1' }]), []);
  assert.deepEqual(tags.activeConditionsOf('k1'), [false, true]);

  tags.moveIn([{ pos: 0, value: 'h1' }]);
  assert.deepEqual(tags.activeConditionsOf('k1'), [true, true]);
  // Without the move-in, this would leave k1 with no disjunct holding.
  assert.deepEqual(tags.moveOut([{ pos: 1, value: '1' }]), []);
  assert.deepEqual(tags.activeConditionsOf('k1'), [true, false]);

  // A move-in of a value no row holds, or of a row gone, changes nothing.
  tags.moveIn([{ pos: 0, value: 'h9' }]);
  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'h1' }]), ['k1']);
  tags.moveIn([{ pos: 0, value: 'h1' }]);
  assert.equal(tags.activeConditionsOf('k1'), undefined);
});

test('removed_tags on an update: the old value no longer reaches the row, the new one does', () => {
  const tags = new MoveTags();
  tags.change('k1', { tags: ['h1/', '/1'], active_conditions: [true, false] });
  // `a` changed from h1 to h2 (both in the subquery's result).
  tags.change('k1', {
    tags: ['h2/', '/1'],
    removed_tags: ['h1/'],
    active_conditions: [true, false],
  });
  assert.deepEqual([...(tags.tagsOf('k1') ?? [])].sort(), ['/1', 'h2/']);
  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'h1' }]), []);
  assert.deepEqual(tags.activeConditionsOf('k1'), [true, false]);
  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'h2' }]), ['k1']);
});

test('composite disjuncts share a position: (a AND b) OR (a AND c)', () => {
  // `(a IN sq1 AND b IN sq2) OR (a IN sq1 AND c IN sq3)`: positions a=0, b=1, c=2.
  const tags = new MoveTags();
  tags.change('k1', { tags: ['ha/hb/', 'ha//hc'], active_conditions: [true, true, true] });
  tags.change('k2', { tags: ['ha/hb/', 'ha//hx'], active_conditions: [true, true, false] });
  tags.change('k3', { tags: ['hz/hb/', 'hz//hc'], active_conditions: [true, true, true] });

  // b's value leaves sq2: k1 still has a AND c; k2 had only a AND b; k3 too has a AND c.
  assert.deepEqual(tags.moveOut([{ pos: 1, value: 'hb' }]), ['k2']);
  assert.deepEqual(tags.activeConditionsOf('k1'), [true, false, true]);
  // a's value leaves sq1: no disjunct of k1 holds any more.
  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'ha' }]), ['k1']);
  assert.deepEqual(tags.activeConditionsOf('k3'), [true, false, true]);
  // Several patterns in one event.
  assert.deepEqual(
    tags.moveOut([
      { pos: 2, value: 'hc' },
      { pos: 0, value: 'hz' },
    ]),
    ['k3'],
  );
});

test('a tag removed keeps the slots another tag of the row still holds in the index', () => {
  // No active conditions: the row stays while it has a tag. Both tags hold `ha` at position 0.
  const tags = new MoveTags();
  tags.change('k1', { tags: ['ha/hb/', 'ha//hc'] });
  tags.change('k1', { removed_tags: ['ha//hc'] });
  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'ha' }]), ['k1']);
});

test('without active conditions a row leaves with its last matching tag', () => {
  const tags = new MoveTags();
  tags.change('k1', { tags: ['h1', 'h2'] });
  tags.change('k2', { tags: ['h2'] });
  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'h2' }]), ['k2']);
  assert.deepEqual([...(tags.tagsOf('k1') ?? [])], ['h1']);
  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'h1' }]), ['k1']);
});

test('a delete forgets the row; clear (must-refetch) forgets everything, tag width included', () => {
  const tags = new MoveTags();
  tags.change('k1', { tags: ['h1/', '/1'], active_conditions: [true, false] });
  tags.change('k2', { tags: ['h1/', '/1'], active_conditions: [true, false] });
  tags.forget('k1');
  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'h1' }]), ['k2']);

  tags.change('k3', { tags: ['h1/', '/1'], active_conditions: [true, false] });
  tags.clear();
  assert.equal(tags.tagsOf('k3'), undefined);
  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'h1' }]), []);
  // The shape after a refetch may have another clause: three positions, one disjunct.
  tags.change('k4', { tags: ['h1/h2/h3'], active_conditions: [true, true, true] });
  assert.deepEqual(tags.moveOut([{ pos: 2, value: 'h3' }]), ['k4']);
});

test('a change without tags leaves the row as it was; active conditions are overwritten', () => {
  const tags = new MoveTags();
  tags.change('k1', { tags: ['h1/', '/1'], active_conditions: [true, true] });
  tags.change('k1', {});
  assert.deepEqual(tags.activeConditionsOf('k1'), [true, true]);
  tags.change('k1', { tags: ['h1/', '/1'], active_conditions: [true, false] });
  assert.deepEqual(tags.moveOut([{ pos: 0, value: 'h1' }]), ['k1']);
});
