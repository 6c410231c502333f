import assert from 'node:assert/strict';
import { test } from 'node:test';
import { messagesFrame } from './follow-shape.js';

test('a messages frame splices the stored JSON texts and the schema header into valid JSON', () => {
  const entries = [
    '{"key":"\\"public\\".\\"items\\"/\\"1\\"","value":{"id":"1","t":"é\\n"},"headers":{"operation":"insert","relation":["public","items"]}}',
    '{"headers":{"control":"up-to-date","global_last_seen_lsn":"9"}}',
  ];
  const schema = '{"id":{"type":"int4","pk_index":0},"t":{"type":"text"}}';
  const text = messagesFrame('sub "1"', 'h-1', { tx: 123n, op: 4 }, schema, entries.join(','));
  assert.deepEqual(JSON.parse(text), {
    type: 'messages',
    id: 'sub "1"',
    handle: 'h-1',
    offset: '123_4',
    schema: JSON.parse(schema) as unknown,
    messages: entries.map((entry) => JSON.parse(entry) as unknown),
  });
  const bare = JSON.parse(
    messagesFrame('a', 'h', { tx: 0n, op: Infinity }, undefined, ''),
  ) as object;
  assert.deepEqual(bare, { type: 'messages', id: 'a', handle: 'h', offset: '0_inf', messages: [] });
});
