import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseClientFrame } from './client-frame.js';

const subscribe = (fields: Record<string, unknown>) =>
  JSON.stringify({ type: 'subscribe', id: 's1', offset: 'now', ...fields });

test('a subscribe is read as the GET with the same parameters', () => {
  const frame = parseClientFrame(
    subscribe({
      params: { table: 'items', where: 'id = $1 OR id = $2', params: ['1', '2'], replica: 'full' },
      handle: 'abc-1',
      offset: '12_4',
    }),
  );
  assert.equal(frame.type, 'subscribe');
  if (frame.type !== 'subscribe') return;
  assert.equal(frame.id, 's1');
  assert.equal(frame.request.handle, 'abc-1');
  assert.equal(frame.request.offsetText, '12_4');
  assert.equal(frame.request.live, false);
  assert.deepEqual(frame.request.definition.params, ['1', '2']);
  assert.equal(frame.request.definition.replica, 'full');
});

test('params as an object are numbered as params[n] in a query string', () => {
  const frame = parseClientFrame(
    subscribe({
      params: { table: 'items', where: 'id = $1 OR id = $2', params: { 2: 'b', 1: 'a' } },
    }),
  );
  assert.equal(frame.type, 'subscribe');
  if (frame.type === 'subscribe') assert.deepEqual(frame.request.definition.params, ['a', 'b']);
  const gap = parseClientFrame(
    subscribe({ params: { table: 'items', where: 'id = $1', params: { 2: 'b' } } }),
  );
  assert.equal(gap.type, 'invalid');
  if (gap.type === 'invalid') assert.match(gap.error.message, /params\[1\] is missing/);
});

test('refusals name the id when the frame had a valid one, and the field at fault', () => {
  const cases: [string, string | undefined, string, string][] = [
    ['{', undefined, 'SLUICE_ERR_WS_FRAME_INVALID', 'frame'],
    ['"text"', undefined, 'SLUICE_ERR_WS_FRAME_INVALID', 'frame'],
    [JSON.stringify({ type: 'subscribe', id: '' }), undefined, 'SLUICE_ERR_WS_FRAME_INVALID', 'id'],
    [JSON.stringify({ type: 'ping', id: 'x' }), 'x', 'SLUICE_ERR_WS_FRAME_INVALID', 'type'],
    [subscribe({ params: [] }), 's1', 'SLUICE_ERR_WS_FRAME_INVALID', 'params'],
    [
      subscribe({ params: { table: 'items', colums: 'id' } }),
      's1',
      'SLUICE_ERR_SHAPE_INVALID',
      'colums',
    ],
    [
      subscribe({ params: { table: 'items' }, handle: 3 }),
      's1',
      'SLUICE_ERR_SHAPE_INVALID',
      'handle',
    ],
    [
      subscribe({ params: { table: 'items', params: 'x' } }),
      's1',
      'SLUICE_ERR_SHAPE_INVALID',
      'params',
    ],
    [
      subscribe({ params: { table: 'items' }, offset: '-1' }),
      's1',
      'SLUICE_ERR_SHAPE_INVALID',
      'offset',
    ],
    [
      subscribe({ params: { table: 'items' }, offset: '0_3', handle: 'h' }),
      's1',
      'SLUICE_ERR_SHAPE_INVALID',
      'offset',
    ],
  ];
  for (const [text, id, code, field] of cases) {
    const frame = parseClientFrame(text);
    assert.equal(frame.type, 'invalid', text);
    if (frame.type !== 'invalid') continue;
    assert.equal(frame.id, id, text);
    assert.equal(frame.error.code, code, text);
    assert.ok(frame.error.details.fields && field in frame.error.details.fields, text);
  }
});

test('an unsubscribe needs only its id', () => {
  assert.deepEqual(parseClientFrame('{"type":"unsubscribe","id":"a"}'), {
    type: 'unsubscribe',
    id: 'a',
  });
});
