import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SharedMessagesFrame, messagesFrame } from './messages-frame.js';
import { PreparedFrame } from './prepared-frame.js';

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
    assert.equal(shared.for(id).payload.toString('utf8'), expected);
    assert.deepEqual(JSON.parse(shared.for(id).payload.toString('utf8')), JSON.parse(expected));
    assert.equal(shared.for(id), shared.for(id), 'the same frame for the same id');
  }
  const empty = new SharedMessagesFrame('h', { tx: 0n, op: Infinity }, '');
  assert.equal(
    empty.for('a').payload.toString(),
    messagesFrame('a', 'h', { tx: 0n, op: Infinity }, undefined, ''),
  );
});

/** A server's text frame read back as RFC 6455 §5.2 lays it out: FIN, opcode, length, payload. */
function readTextFrame(wire: Buffer): Buffer {
  assert.equal(wire[0], 0x81, 'FIN and the text opcode');
  const short = wire[1]! & 0x7f;
  assert.equal(wire[1]! & 0x80, 0, 'a server frame is not masked');
  const [length, start] =
    short === 126
      ? [wire.readUInt16BE(2), 4]
      : short === 127
        ? [Number(wire.readBigUInt64BE(2)), 10]
        : [short, 2];
  assert.equal(wire.length, start + length, 'the head names the whole payload');
  return wire.subarray(start);
}

test('a prepared frame is the text frame ws would send, head and payload, at every length size', () => {
  for (const size of [0, 125, 126, 65_535, 65_536, 200_000]) {
    const payload = Buffer.from('x'.repeat(size));
    const frame = new PreparedFrame(payload);
    assert.ok(frame.wire, 'ws exports its framing');
    assert.ok(readTextFrame(frame.wire).equals(payload), `a ${size}-byte payload`);
  }
});
