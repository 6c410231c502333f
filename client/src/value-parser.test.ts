import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ShapeStream as OfficialShapeStream,
  type Message as OfficialMessage,
} from '@electric-sql/client';
import { HEADERS } from '@sluice/protocol';
import type { Message } from './messages.js';
import { parsePgArray } from './pg-array.js';
import type { ColumnInfo, Schema } from './schema.js';
import { ShapeStream } from './shape-stream.js';
import { ValueParser, type Parser } from './value-parser.js';

// Parity with @electric-sql/client 1.5: the same response, parsed by its ShapeStream (its parser
// is not exported, so it is reached through its public API with a fetch client that answers
// in-process) and by ours, must give equal values. The texts are what Postgres prints (§4).

interface Case {
  column: ColumnInfo;
  texts: (string | null)[];
}

const CASES: Record<string, Case> = {
  i2: { column: { type: 'int2' }, texts: ['0', '-32768', '32767', null] },
  i4: { column: { type: 'int4' }, texts: ['2147483647', '-2147483648', '42'] },
  i8: {
    column: { type: 'int8' },
    texts: ['9223372036854775807', '-9223372036854775808', '0', '9007199254740993'],
  },
  f4: {
    column: { type: 'float4' },
    texts: ['1.5', '-0', 'NaN', 'Infinity', '-Infinity', '3.4028235e+38', '1e-45'],
  },
  f8: {
    column: { type: 'float8' },
    texts: ['0.1', '1.7976931348623157e+308', '5e-324', 'NaN', '-Infinity', 'Infinity', '-0'],
  },
  b: { column: { type: 'bool' }, texts: ['t', 'f', 'true', 'false'] },
  j: {
    column: { type: 'json' },
    texts: ['{"b": [1, 2], "a": null, "s": "x\\"y"}', '[1,2,"x"]', '"str"', 'null', '123', '{}'],
  },
  jb: {
    column: { type: 'jsonb' },
    texts: ['{"a": null, "b": [1, 2]}', '[]', '{"nested": {"deep": [{"k": true}]}}', '1.5e300'],
  },
  num: { column: { type: 'numeric' }, texts: ['12345678901234567890.123456789', 'NaN', '-0.5'] },
  t: { column: { type: 'text' }, texts: ["it's", '', 'a"b\\c', 'emoji 😀', 'NULL', '{1,2}'] },
  ts: { column: { type: 'timestamptz' }, texts: ['2024-02-29 23:59:59.123456+00', 'infinity'] },
  u: { column: { type: 'uuid' }, texts: ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'] },
  by: { column: { type: 'bytea' }, texts: ['\\x00ff10', '\\x'] },
  iv: { column: { type: 'interval' }, texts: ['P1Y2M3DT4H5M6.5S'] },
  m: { column: { type: 'mood' }, texts: ['happy', `it's "complicated"`] },
  pk: { column: { type: 'int4', pk_index: 0, not_null: true }, texts: ['7'] },
  vc: { column: { type: 'varchar', max_length: 12 }, texts: ['varchar(12)!'] },
  a_i4: { column: { type: 'int4', dims: 1 }, texts: ['{1,2,NULL}', '{}', '{-5}', null] },
  a_i4_2d: { column: { type: 'int4', dims: 2 }, texts: ['{{1,2},{3,NULL}}', '{{{1}},{{2}}}'] },
  a_t: {
    column: { type: 'text', dims: 1 },
    texts: [
      '{a,"b c","d\\"e",NULL,"NULL","","back\\\\slash","{}"}',
      '{"a,b","}","{",x}',
      '{"with \\"quotes\\" and \\\\"}',
      '{é,😀}',
    ],
  },
  a_t_2d: { column: { type: 'text', dims: 2 }, texts: ['{{a,b},{"c,d",NULL}}'] },
  a_i8: { column: { type: 'int8', dims: 1 }, texts: ['{9223372036854775807,NULL,-1}'] },
  a_b: { column: { type: 'bool', dims: 1 }, texts: ['{t,f,NULL}'] },
  a_f8: { column: { type: 'float8', dims: 1 }, texts: ['{NaN,Infinity,-Infinity,1.5,-0}'] },
  a_jb: { column: { type: 'jsonb', dims: 1 }, texts: ['{"{\\"a\\": 1}",NULL,"[1, 2]"}'] },
  a_num: { column: { type: 'numeric', dims: 1 }, texts: ['{1.10,NaN,NULL}'] },
  a_ts: { column: { type: 'timestamptz', dims: 1 }, texts: ['{"2024-01-01 00:00:00+00",NULL}'] },
};

const SCHEMA: Schema = Object.fromEntries(Object.entries(CASES).map(([n, c]) => [n, c.column]));

/** One insert per value (a NULL in a NOT NULL column is tested on its own). */
function inserts(): object[] {
  return Object.entries(CASES).flatMap(([name, { column, texts }]) =>
    texts
      .filter((text) => text !== null || !column.not_null)
      .map((text, i) => ({
        key: `"public"."t"/"${name}-${i}"`,
        value: { [name]: text },
        headers: { operation: 'insert', relation: ['public', 't'] },
      })),
  );
}

/** An update with `old_value` (replica=full), which both clients parse too. */
const UPDATE = {
  key: '"public"."t"/"u"',
  value: { i8: '1', a_i4: '{1}', j: '{"x":1}' },
  old_value: { i8: '9223372036854775807', a_i4: '{NULL}' },
  headers: { operation: 'update', relation: ['public', 't'] },
};

const UP_TO_DATE = { headers: { control: 'up-to-date', global_last_seen_lsn: '0' } };

/** A fetch client that answers every request with `messages` (and `up-to-date` when asked). */
function answering(messages: object[], schema: Schema, upToDate: boolean): typeof fetch {
  const body = upToDate ? [...messages, UP_TO_DATE] : messages;
  return () =>
    Promise.resolve(
      new Response(JSON.stringify(body), {
        status: 200,
        headers: {
          'content-type': 'application/json',
          [HEADERS.handle]: 'h1',
          [HEADERS.offset]: '0_inf',
          [HEADERS.schema]: JSON.stringify(schema),
        },
      }),
    );
}

const URL_ = 'http://sluice.invalid/v1/shape';

/**
 * What the official client delivers for one response (or the error it stops with). It is never
 * sent `up-to-date`: its module-level tracker would arm a 60 s timer that keeps the test process
 * alive. Its first batch is taken and the stream aborted.
 */
function official(messages: object[], schema: Schema, parser?: Parser): Promise<OfficialMessage[]> {
  const controller = new AbortController();
  const stream = new OfficialShapeStream({
    url: URL_,
    params: { table: 't' },
    signal: controller.signal,
    fetchClient: answering(messages, schema, false),
    parser,
  });
  return new Promise<OfficialMessage[]>((resolve, reject) => {
    stream.subscribe((batch) => resolve(batch), reject);
  }).finally(() => controller.abort());
}

/** The same through our ShapeStream, which stops after the up-to-date. */
function ours(messages: object[], schema: Schema, parser?: Parser): Promise<Message[]> {
  const stream = new ShapeStream({
    url: URL_,
    params: { table: 't' },
    subscribe: false,
    fetchClient: answering(messages, schema, true),
    parser,
  });
  return new Promise((resolve, reject) => {
    stream.subscribe((batch) => resolve(batch), reject);
  });
}

/** The change messages' keys and values. */
const values = (batch: (Message | OfficialMessage)[]) =>
  batch.flatMap((m) => ('key' in m ? [[m.key, m.value, m.old_value]] : []));

test('every type, scalar and array, parses to what the official client gives', async () => {
  const messages = [...inserts(), UPDATE];
  const expected = values(await official(structuredClone(messages), SCHEMA));
  assert.equal(expected.length, messages.length, 'the official client parsed every message');
  assert.deepEqual(values(await ours(structuredClone(messages), SCHEMA)), expected);
  const direct = new ValueParser().parseMessages(structuredClone(messages), SCHEMA);
  assert.deepEqual(values(direct), expected);
});

test('the documented values: int8 as BigInt, NaN and Infinity, json parsed, arrays nested', async () => {
  const batch = await ours(inserts(), SCHEMA);
  const row = (name: string, i = 0) => {
    const message = batch.find((m) => 'key' in m && m.key === `"public"."t"/"${name}-${i}"`);
    assert.ok(message && 'key' in message, `${name}-${i}`);
    return message.value[name];
  };
  assert.equal(row('i8'), 9223372036854775807n);
  assert.equal(row('i8', 3), 9007199254740993n, 'beyond 2^53, exact');
  assert.ok(Number.isNaN(row('f8', 3)));
  assert.equal(row('f8', 4), -Infinity);
  assert.equal(row('f4', 3), Infinity);
  assert.ok(Object.is(row('f8', 6), -0));
  assert.equal(row('b'), true);
  assert.equal(row('b', 1), false);
  assert.deepEqual(row('j'), { b: [1, 2], a: null, s: 'x"y' });
  assert.equal(row('num'), '12345678901234567890.123456789', 'numeric keeps its text');
  assert.deepEqual(row('a_t'), ['a', 'b c', 'd"e', null, 'NULL', '', 'back\\slash', '{}']);
  assert.deepEqual(row('a_i4_2d'), [
    [1, 2],
    [3, null],
  ]);
  assert.deepEqual(row('a_i8'), [9223372036854775807n, null, -1n]);
  assert.deepEqual(row('a_jb'), [{ a: 1 }, null, [1, 2]]);
  assert.equal(row('i2', 3), null);
});

test('custom parsers take over their types, in arrays too, as in the official client', async () => {
  const parser: Parser = {
    int4: (text) => Number(text) * 10,
    mood: (text) => `mood:${text}`,
    timestamptz: (text) => text.slice(0, 4),
  };
  const messages = inserts();
  const expected = values(await official(structuredClone(messages), SCHEMA, parser));
  assert.deepEqual(values(await ours(structuredClone(messages), SCHEMA, parser)), expected);
  const parsed = new ValueParser(parser).parseRow({ i4: '4', a_i4: '{1,NULL}', m: 'sad' }, SCHEMA);
  assert.deepEqual(parsed, { i4: 40, a_i4: [10, null], m: 'mood:sad' });
});

test('a NULL in a NOT NULL column fails both clients with ParserNullValueError', async () => {
  const message = { key: 'k', value: { pk: null }, headers: { operation: 'insert' } };
  const theirs = await official([message], SCHEMA).then(
    () => assert.fail('the official client accepted it'),
    (error: Error) => error,
  );
  const mine = await ours([message], SCHEMA).then(
    () => assert.fail('our client accepted it'),
    (error: Error) => error,
  );
  assert.equal(mine.name, theirs.name);
  assert.equal(mine.message, theirs.message);
  assert.equal((mine as { code?: string }).code, 'SLUICE_ERR_CLIENT_NULL_VALUE');
});

test('columns missing from the schema stay text; no schema, no parsing', () => {
  const parser = new ValueParser();
  assert.deepEqual(parser.parseRow({ x: '1', i4: '2' }, SCHEMA), { x: '1', i4: 2 });
  assert.deepEqual(parser.parseRow({ i4: '2' }, {}), { i4: '2' });
});

test('array text: decorations, NULLs and escapes (where the official parser has no answer)', () => {
  const asText = (text: string) => parsePgArray(text, (token) => token);
  assert.deepEqual(asText('[0:1]={1,2}'), ['1', '2'], 'lower bounds are skipped');
  assert.deepEqual(asText('{NULL,"NULL",""}'), [null, 'NULL', '']);
  assert.deepEqual(asText('{"a\\\\b\\"c"}'), ['a\\b"c']);
  assert.deepEqual(asText('{}'), []);
  assert.deepEqual(asText('{{},{}}'), [[], []]);
  // Malformed text ends the parse instead of throwing or looping.
  assert.deepEqual(asText('{1,2'), ['1', '2']);
  assert.deepEqual(asText('{"open'), ['open']);
  assert.deepEqual(asText('not an array'), []);
});

test('NOT NULL arrays may hold NULL elements (the official client throws here)', () => {
  const schema: Schema = { tags: { type: 'text', dims: 1, not_null: true } };
  assert.deepEqual(new ValueParser().parseRow({ tags: '{a,NULL}' }, schema), {
    tags: ['a', null],
  });
});
