import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SharedMessagesFrame, messagesFrame } from './messages-frame.js';

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

test('a shared messages frame has the bytes of messagesFrame for each id, built once per id', () => {
  const messages = [
    '{"key":"\\"public\\".\\"items\\"/\\"1\\"","value":{"id":"1","t":"é ✓\\n"},"headers":{"operation":"insert","relation":["public","items"]}}',
    '{"headers":{"control":"up-to-date","global_last_seen_lsn":"9"}}',
  ].join(',');
  const offset = { tx: 123n, op: 4 };
  const shared = new SharedMessagesFrame('h "1"', offset, messages);
  for (const id of ['1', 'sub "2"', 'é']) {
    const expected = messagesFrame(id, 'h "1"', offset, undefined, messages);
    assert.equal(shared.for(id).toString('utf8'), expected);
    assert.deepEqual(JSON.parse(shared.for(id).toString('utf8')), JSON.parse(expected));
    assert.equal(shared.for(id), shared.for(id), 'the same Buffer for the same id');
  }
  const empty = new SharedMessagesFrame('h', { tx: 0n, op: Infinity }, '');
  assert.equal(
    empty.for('a').toString(),
    messagesFrame('a', 'h', { tx: 0n, op: Infinity }, undefined, ''),
  );
});
