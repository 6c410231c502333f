import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChangeMessage, LogMode, Message, Row } from './messages.js';
import type { ShapeStreamInterface, ShapeStreamSubscriber } from './shape-stream.js';
import type { Mode } from './shape-stream-state.js';
import { Shape } from './shape.js';

/** Stands in for a ShapeStream: the test hands the Shape its batches. */
class FakeStream implements ShapeStreamInterface {
  mode: Mode = 'live';
  readonly logMode: LogMode = 'full';
  #subscriber: ShapeStreamSubscriber<Row> | undefined;
  #onError: ((error: Error) => void) | undefined;

  subscribe(callback: ShapeStreamSubscriber<Row>, onError?: (error: Error) => void) {
    this.#subscriber = callback;
    this.#onError = onError;
    return () => undefined;
  }
  lastSyncedAt() {
    return undefined;
  }
  isConnected() {
    return true;
  }
  isLoading() {
    return false;
  }
  async emit(messages: Message[], mode: Mode = this.mode): Promise<void> {
    this.mode = mode;
    await this.#subscriber?.(messages, { mode });
  }
  fail(error: Error): void {
    this.#onError?.(error);
  }
}

const key = (id: number) => `"public"."items"/"${id}"`;
const insert = (id: number, v: number): ChangeMessage => ({
  key: key(id),
  value: { id, v },
  headers: { operation: 'insert' },
});
const update = (id: number, value: Row): ChangeMessage => ({
  key: key(id),
  value: { id, ...value },
  headers: { operation: 'update' },
});
const remove = (id: number): ChangeMessage => ({
  key: key(id),
  value: { id },
  headers: { operation: 'delete' },
});
const UP_TO_DATE: Message = { headers: { control: 'up-to-date' } };
const MUST_REFETCH: Message = { headers: { control: 'must-refetch' } };
const FALLBACK_REFRESH: Message = { headers: { control: 'must-refetch', fallback: true } };

function watched() {
  const stream = new FakeStream();
  const shape = new Shape(stream);
  const notifications: { rows: Row[]; mode: Mode }[] = [];
  shape.subscribe(({ rows, mode }) => notifications.push({ rows, mode }));
  return { stream, shape, notifications };
}

test('subscribers hear of complete data only: at up-to-date, never mid-snapshot', async () => {
  const { stream, shape, notifications } = watched();
  await stream.emit([insert(1, 0), insert(2, 0)]);
  assert.equal(notifications.length, 0);
  assert.equal(shape.isUpToDate, false);
  await stream.emit([insert(3, 0), UP_TO_DATE]);
  assert.deepEqual(notifications, [
    {
      rows: [
        { id: 1, v: 0 },
        { id: 2, v: 0 },
        { id: 3, v: 0 },
      ],
      mode: 'live',
    },
  ]);
  assert.equal(shape.isUpToDate, true);
  // An up-to-date with nothing new is no news.
  await stream.emit([UP_TO_DATE]);
  assert.equal(notifications.length, 1);
  // A change is told at the up-to-date that ends its batch, or the next one.
  await stream.emit([update(1, { v: 5 })]);
  assert.equal(shape.isUpToDate, false);
  await stream.emit([remove(2), UP_TO_DATE]);
  assert.equal(notifications.length, 2);
  assert.deepEqual(notifications[1]?.rows, [
    { id: 1, v: 5 },
    { id: 3, v: 0 },
  ]);
});

test('a change of mode is told even when no row changed', async () => {
  const { stream, notifications } = watched();
  await stream.emit([insert(1, 0), UP_TO_DATE]);
  await stream.emit([UP_TO_DATE], 'fallback');
  await stream.emit([UP_TO_DATE], 'fallback');
  await stream.emit([UP_TO_DATE], 'live');
  assert.deepEqual(
    notifications.map((n) => n.mode),
    ['live', 'fallback', 'live'],
  );
});

test('must-refetch clears the rows; what follows is the whole shape', async () => {
  const { stream, shape, notifications } = watched();
  await stream.emit([insert(1, 0), insert(2, 0), UP_TO_DATE]);
  await stream.emit([MUST_REFETCH]);
  assert.deepEqual(shape.currentRows, []);
  assert.equal(notifications.length, 1, 'no empty notification in between');
  await stream.emit([insert(2, 1), UP_TO_DATE]);
  assert.deepEqual(notifications[1]?.rows, [{ id: 2, v: 1 }]);
  // A fallback refresh is the same: deletions show.
  await stream.emit([FALLBACK_REFRESH, insert(3, 3), UP_TO_DATE], 'fallback');
  assert.deepEqual(notifications[2], { rows: [{ id: 3, v: 3 }], mode: 'fallback' });
});

test('insert over an existing row replaces it; update and delete of a missing row change nothing', async () => {
  const { stream, shape } = watched();
  await stream.emit([insert(1, 0), insert(1, 7), update(9, { v: 1 }), remove(8), UP_TO_DATE]);
  assert.deepEqual(shape.currentRows, [{ id: 1, v: 7 }]);
  await stream.emit([update(1, { w: 'x' }), UP_TO_DATE]);
  assert.deepEqual(shape.currentRows, [{ id: 1, v: 7, w: 'x' }]);
});

test('rows resolves once complete; an error rejects it and is kept', async () => {
  const { stream, shape } = watched();
  const rows = shape.rows;
  await stream.emit([insert(1, 0), UP_TO_DATE]);
  assert.deepEqual(await rows, [{ id: 1, v: 0 }]);
  assert.deepEqual(await shape.rows, [{ id: 1, v: 0 }], 'at once when already complete');
  await stream.emit([MUST_REFETCH]);
  const pending = shape.rows;
  const error = new Error('boom');
  stream.fail(error);
  await assert.rejects(pending, /boom/);
  await assert.rejects(shape.rows, /boom/);
  assert.equal(shape.error, error);
});

/** A small deterministic PRNG (mulberry32), so a failure can be replayed from its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * A random log of changes to `items (id, a, b)` as replication would send it with
 * replica=default (updates carry the key and the changed columns), applied to Postgres (`rows`).
 */
function randomLog(
  next: () => number,
  length: number,
): { log: ChangeMessage[]; states: Map<string, Row>[] } {
  const rows = new Map<string, Row>();
  const states = [new Map(rows)];
  const log: ChangeMessage[] = [];
  const pick = (n: number) => Math.floor(next() * n);
  while (log.length < length) {
    const id = 1 + pick(6);
    const existing = rows.get(key(id));
    let change: ChangeMessage;
    if (!existing) {
      change = {
        key: key(id),
        value: { id, a: pick(100), b: pick(100) },
        headers: { operation: 'insert' },
      };
      rows.set(key(id), change.value);
    } else if (next() < 0.25) {
      change = remove(id);
      rows.delete(key(id));
    } else {
      const changed: Row = next() < 0.5 ? { a: pick(100) } : { b: pick(100) };
      if (next() < 0.3) changed.a = pick(100);
      change = update(id, changed);
      rows.set(key(id), { ...existing, ...changed });
    }
    log.push(change);
    states.push(new Map(rows));
  }
  return { log, states };
}

test('SPEC.md: replaying the log from the live position onto a newer fallback snapshot ends right', async () => {
  for (let seed = 1; seed <= 500; seed++) {
    const next = random(seed);
    const { log, states } = randomLog(next, 5 + Math.floor(next() * 40));
    const live = Math.floor(next() * log.length); // O: where the live log was left
    const snapshotAt = live + Math.floor(next() * (log.length - live + 1)); // T ≥ O
    const { stream, shape, notifications } = watched();
    // Live up to O, through the log itself.
    await stream.emit([...log.slice(0, live), UP_TO_DATE]);
    // Fallback: a snapshot taken at T replaces the rows.
    const snapshot = [...(states[snapshotAt]?.values() ?? [])].map((row): ChangeMessage => ({
      key: key(Number(row.id)),
      value: row,
      headers: { operation: 'insert' },
    }));
    await stream.emit([FALLBACK_REFRESH, ...snapshot, UP_TO_DATE], 'fallback');
    assert.deepEqual(shape.currentValue, states[snapshotAt], `seed ${seed}: the snapshot`);
    // Back to live: the log after O, in chunks, then up-to-date.
    const rest = log.slice(live);
    const cut = Math.floor(next() * (rest.length + 1));
    const before = notifications.length;
    await stream.emit(rest.slice(0, cut), 'live');
    assert.equal(notifications.length, before, `seed ${seed}: nothing told mid-replay`);
    await stream.emit([...rest.slice(cut), UP_TO_DATE], 'live');
    assert.deepEqual(shape.currentValue, states.at(-1), `seed ${seed}: equal to the table`);
    const told = notifications.at(-1)?.rows ?? [];
    assert.deepEqual(new Map(told.map((row) => [key(Number(row.id)), row])), states.at(-1));
  }
});

/** A change of a subquery shape `a IN (SELECT …) OR b = 1`: tags and active conditions. */
const tagged = (change: ChangeMessage, a: string, b: number): ChangeMessage => ({
  ...change,
  headers: { ...change.headers, tags: [`${a}/`, '/1'], active_conditions: [true, b === 1] },
});
const moveOut = (value: string): Message => ({
  headers: { event: 'move-out', patterns: [{ pos: 0, value }] },
});
const moveIn = (value: string): Message => ({
  headers: { event: 'move-in', patterns: [{ pos: 0, value }] },
});

test('a move-out deletes the rows it leaves outside every disjunct, told at up-to-date', async () => {
  const { stream, shape, notifications } = watched();
  await stream.emit([
    tagged(insert(1, 1), 'h1', 1),
    tagged(insert(2, 2), 'h1', 2),
    tagged(insert(3, 2), 'h2', 2),
    UP_TO_DATE,
  ]);
  await stream.emit([moveOut('h1')]);
  assert.deepEqual(shape.currentRows, [
    { id: 1, v: 1 },
    { id: 3, v: 2 },
  ]);
  assert.equal(notifications.length, 1, 'not before the up-to-date');
  await stream.emit([UP_TO_DATE]);
  assert.deepEqual(notifications[1]?.rows, shape.currentRows);

  // A move-in is silent; the rows that match again follow as inserts.
  await stream.emit([moveIn('h1'), UP_TO_DATE]);
  assert.equal(notifications.length, 2);
  await stream.emit([tagged(insert(2, 2), 'h1', 2), UP_TO_DATE]);
  assert.equal(shape.currentRows.length, 3);

  // A deleted row's tags go with it: back with a=h2, the move-out of h1 does not reach it.
  await stream.emit([remove(2), tagged(insert(2, 9), 'h2', 2), moveOut('h1'), UP_TO_DATE]);
  assert.deepEqual(shape.currentRows, [
    { id: 1, v: 1 },
    { id: 3, v: 2 },
    { id: 2, v: 9 },
  ]);
});

test('must-refetch forgets the tags: a move-out after it does not reach the new rows', async () => {
  const { stream, shape, notifications } = watched();
  await stream.emit([tagged(insert(1, 2), 'h1', 2), UP_TO_DATE]);
  // Not tagged after the refetch (the shape is no longer one with a subquery, say).
  await stream.emit([MUST_REFETCH, insert(1, 2), UP_TO_DATE]);
  await stream.emit([moveOut('h1'), UP_TO_DATE]);
  assert.deepEqual(shape.currentRows, [{ id: 1, v: 2 }]);
  assert.equal(notifications.length, 2, 'a move-out that deleted nothing is no news');
});
