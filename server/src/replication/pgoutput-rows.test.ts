import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { emptyRow, isRowMessage, readRowMessage } from './pgoutput-rows.js';

// Messages built byte by byte as PostgreSQL's "Logical Replication Message Formats" gives them.
const int16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const int32 = (n: number) => {
  const bytes = Buffer.alloc(4);
  bytes.writeInt32BE(n);
  return bytes;
};
const cString = (text: string) => Buffer.concat([Buffer.from(text), Buffer.from([0])]);
const letter = (text: string) => Buffer.from(text, 'latin1');
/** A row message of relation 4242: its tag, then its parts (submessage letters, tuples). */
const rowMessage = (tag: string, ...parts: Buffer[]) =>
  Buffer.concat([letter(tag), int32(4242), ...parts]);

/** An unchanged TOASTed value ('u'), which carries no bytes. */
const UNCHANGED = Symbol('unchanged');
type Value = string | null | typeof UNCHANGED;
function tupleData(values: Value[]): Buffer {
  return Buffer.concat([
    int16(values.length),
    ...values.map((value) => {
      if (value === null) return letter('n');
      if (value === UNCHANGED) return letter('u');
      const bytes = Buffer.from(value);
      return Buffer.concat([letter('t'), int32(bytes.length), bytes]);
    }),
  ]);
}

const COLUMNS = ['id', '__proto__', 'note'];
const relationMessage = Buffer.concat([
  letter('R'),
  int32(4242),
  cString('public'),
  cString('items'),
  letter('f'),
  int16(COLUMNS.length),
  ...COLUMNS.map((name, i) =>
    Buffer.concat([Buffer.from([i === 0 ? 1 : 0]), cString(name), int32(25), int32(-1)]),
  ),
]);

function relations(): Map<number, Pgoutput.MessageRelation> {
  const relation = new PgoutputPlugin({ protoVersion: 1, publicationNames: ['p'] }).parse(
    relationMessage,
  ) as Pgoutput.MessageRelation;
  return new Map([[relation.relationOid, relation]]);
}

const row = (id: string, proto: string | null, note: unknown) => {
  const value = emptyRow();
  Object.assign(value, { id, note });
  Object.defineProperty(value, '__proto__', { value: proto, enumerable: true, writable: true });
  return value;
};

test('inserts, updates and deletes are read with every value as the text Postgres sent', () => {
  const known = relations();
  const relation = known.get(4242)!;
  // A leading U+FEFF is part of the value (a TextDecoder would drop it).
  const note = '\ufeffé 😀 2026-12-04 12:00:00.123456+00';
  const insert = rowMessage('I', letter('N'), tupleData(['1', 'p', note]));
  assert.equal(isRowMessage(insert), true);
  assert.deepEqual(readRowMessage(insert, known), {
    tag: 'insert',
    relation,
    new: row('1', 'p', note),
  });
  // Nothing inherited reads as a column: a missing `constructor` is absent, not Object's.
  const { new: inserted } = readRowMessage(insert, known) as Pgoutput.MessageInsert;
  assert.equal('constructor' in inserted, false);
  assert.equal('toString' in inserted, false);

  const update = rowMessage(
    'U',
    letter('O'),
    tupleData(['1', null, 'long text']),
    letter('N'),
    tupleData(['2', 'q', UNCHANGED]),
  );
  assert.deepEqual(readRowMessage(update, known), {
    tag: 'update',
    relation,
    key: null,
    old: row('1', null, 'long text'),
    // An unchanged TOASTed value is the old row's.
    new: row('2', 'q', 'long text'),
  });
  const keyUpdate = rowMessage(
    'U',
    letter('K'),
    tupleData(['1', null, null]),
    letter('N'),
    tupleData(['3', null, UNCHANGED]),
  );
  const keyOnly = Object.assign(emptyRow(), { id: '1' });
  assert.deepEqual(readRowMessage(keyUpdate, known), {
    tag: 'update',
    relation,
    key: keyOnly,
    old: null,
    new: row('3', null, undefined),
  });
  const plainUpdate = rowMessage('U', letter('N'), tupleData(['4', 'r', 's']));
  assert.deepEqual(readRowMessage(plainUpdate, known), {
    tag: 'update',
    relation,
    key: null,
    old: null,
    new: row('4', 'r', 's'),
  });

  const fullDelete = rowMessage('D', letter('O'), tupleData(['4', 'r', 's']));
  assert.deepEqual(readRowMessage(fullDelete, known), {
    tag: 'delete',
    relation,
    key: null,
    old: row('4', 'r', 's'),
  });
  const keyDelete = rowMessage('D', letter('K'), tupleData(['4', null, null]));
  assert.deepEqual(readRowMessage(keyDelete, known), {
    tag: 'delete',
    relation,
    key: Object.assign(emptyRow(), { id: '4' }),
    old: null,
  });
  assert.equal(isRowMessage(relationMessage), false);
});

test('a malformed row message is refused with what was wrong, never read past its end', () => {
  const known = relations();
  const insert = rowMessage('I', letter('N'), tupleData(['1', 'p', 'n']));
  for (let cut = 1; cut < insert.length; cut++) {
    assert.throws(() => readRowMessage(insert.subarray(0, cut), known), /pgoutput/);
  }
  assert.throws(
    () => readRowMessage(Buffer.concat([letter('I'), int32(7), letter('N'), tupleData([])]), known),
    /relation 7, never described/,
  );
  const tooMany = rowMessage('I', letter('N'), tupleData(['1', '2', '3', '4']));
  assert.throws(() => readRowMessage(tooMany, known), /4 values for 3 columns/);
  const badKind = rowMessage('I', letter('N'), int16(1), letter('x'));
  assert.throws(() => readRowMessage(badKind, known), /unknown value kind/);
  const negative = rowMessage('I', letter('N'), int16(1), letter('t'), int32(-5));
  assert.throws(() => readRowMessage(negative, known), /negative length/);
  const badPart = rowMessage('D', letter('N'), tupleData(['1', '2', '3']));
  assert.throws(() => readRowMessage(badPart, known), /expected 'O'/);
});
