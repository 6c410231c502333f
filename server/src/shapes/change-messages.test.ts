import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RelationInfo, Row } from '../pg/transaction.js';
import {
  snapshotMessageBuilder,
  messageWriter,
  transactionEntries,
  type MessageContext,
} from './change-messages.js';
import { buildRowKey } from './row-key.js';

const relation: RelationInfo = {
  oid: 1,
  schema: 'public',
  name: 't',
  columns: [],
  keyColumns: ['id'],
};
const context: MessageContext = {
  schema: 'public',
  table: 't',
  columns: ['id', 'v'],
  keyColumns: ['id'],
  replica: 'default',
};
const row = (id: number, v: string): Row => ({ id: String(id), v });
const update = (from: Row, to: Row) => ({
  kind: 'update' as const,
  relation,
  oldRow: from,
  newRow: to,
});

/** Applies messages the way clients do: one row per key. */
function materialise(
  entries: { json: string }[],
  start: Map<string, unknown>,
): Map<string, unknown> {
  const rows = new Map(start);
  for (const { json } of entries) {
    const m = JSON.parse(json) as {
      key: string;
      value: Record<string, unknown>;
      headers: { operation: string };
    };
    if (m.headers.operation === 'delete') rows.delete(m.key);
    else rows.set(m.key, { ...(rows.get(m.key) as object), ...m.value });
  }
  return rows;
}

const key = (id: number) => `"public"."t"/"${id}"`;
const run = (changes: ReturnType<typeof update>[], start: [number, string][]) =>
  materialise(
    transactionEntries(
      messageWriter(context),
      { xid: 1, commitLsn: 100n },
      changes.map((change, position) => ({ change, position })),
    ),
    new Map(start.map(([id, v]) => [key(id), { id: String(id), v }])),
  );

test('two rows swapping keys in one transaction stay two rows', () => {
  const rows = run(
    [update(row(2, 'b'), row(3, 'b')), update(row(3, 'c'), row(2, 'c'))],
    [
      [2, 'b'],
      [3, 'c'],
    ],
  );
  assert.deepEqual(
    rows,
    new Map([
      [key(3), { id: '3', v: 'b' }],
      [key(2), { id: '2', v: 'c' }],
    ]),
  );
});

test('a row moved twice leaves only its last key', () => {
  const rows = run(
    [update(row(1, 'a'), row(2, 'a')), update(row(2, 'a'), row(3, 'a'))],
    [[1, 'a']],
  );
  assert.deepEqual(rows, new Map([[key(3), { id: '3', v: 'a' }]]));
});

test('a key change is a delete of the old key and an insert of the new one, with op positions', () => {
  const entries = transactionEntries(messageWriter(context), { xid: 7, commitLsn: 100n }, [
    { change: update(row(1, 'a'), row(5, 'a')), position: 3 },
  ]);
  const messages = entries.map((e) => JSON.parse(e.json) as { headers: Record<string, unknown> });
  assert.deepEqual(
    entries.map((e) => e.offset),
    [
      { tx: 100n, op: 6 },
      { tx: 100n, op: 7 },
    ],
  );
  assert.deepEqual(
    messages.map((m) => m.headers.operation),
    ['delete', 'insert'],
  );
  assert.equal(messages[1]?.headers.last, true);
  assert.equal(messages[0]?.headers.last, undefined);
});

test('replica=default updates carry the key and changed columns; full carries old_value', () => {
  const change = { change: update({ id: '1', v: 'a' }, { id: '1', v: 'b' }), position: 0 };
  const [plain] = transactionEntries(
    messageWriter({ ...context, columns: ['id', 'v'] }),
    { xid: 1, commitLsn: 1n },
    [change],
  );
  assert.deepEqual((JSON.parse(plain!.json) as { value: unknown }).value, { id: '1', v: 'b' });
  const [full] = transactionEntries(
    messageWriter({ ...context, replica: 'full' }),
    { xid: 1, commitLsn: 1n },
    [change],
  );
  assert.deepEqual((JSON.parse(full!.json) as { old_value: unknown }).old_value, { v: 'a' });
});

test('snapshot messages equal the JSON of the message object, for any text', () => {
  const columns = ['id', 'na"me', 'üñï', 'v'];
  const ctx: MessageContext = {
    schema: 's/x',
    table: 't.y',
    columns,
    keyColumns: ['id', 'v'],
    replica: 'default',
  };
  const select = ['v', 'id', 'üñï', 'na"me', 'extra'];
  const build = snapshotMessageBuilder(ctx, select);
  const samples: (string | null)[][] = [
    ['1', '2', 'a', 'b', 'x'],
    [null, '7', '"quoted"\\back\nline\ttab', '😀 /slash//', null],
    ['', 'a/b', '\u0000\u001f\u2028', '{"j": [1, null]}', 'z'],
    ['\\"/\n', '\ud800 lone', 'é', '42', '"'],
    ['9', '\udfff', null, 'x', '\u007f\u0080'],
  ];
  for (const values of samples) {
    const row = Object.fromEntries(select.map((column, i) => [column, values[i] ?? null]));
    const expected = JSON.stringify({
      key: buildRowKey(
        ctx.schema,
        ctx.table,
        ctx.keyColumns.map((c) => row[c] ?? null),
      ),
      value: Object.fromEntries(columns.map((c) => [c, row[c] ?? null])),
      headers: { operation: 'insert', relation: [ctx.schema, ctx.table] },
    });
    assert.equal(build(values), expected);
  }
});

test('replicated messages equal the JSON of the message object, for any text and change', () => {
  const columns = ['id', 'na"me', 'üñï', 'v'];
  const relationOf: RelationInfo = { ...relation, schema: 's/x', name: 't.y' };
  const texts = ['"quoted"\\back\nline', '😀 /slash//', '\u0000\u001f\u2028', '\ud800 lone', ''];
  const rowAt = (i: number, id = String(i)): Row => ({
    id,
    'na"me': texts[i % texts.length]!,
    üñï: i % 3 === 0 ? null : texts[(i + 1) % texts.length]!,
    v: `/${i}/`,
  });
  const changes = [
    { change: { kind: 'insert' as const, relation: relationOf, newRow: rowAt(1) }, position: 0 },
    { change: update(rowAt(2), { ...rowAt(2), v: 'changed' }), position: 1 },
    { change: update(rowAt(3), rowAt(4, 'moved/key')), position: 2 },
    { change: { kind: 'delete' as const, relation: relationOf, oldRow: rowAt(5) }, position: 3 },
    { change: update(rowAt(6), { ...rowAt(6), 'na"me': 'whole' }), position: 4, upsert: true },
  ];
  for (const replica of ['default', 'full'] as const) {
    const ctx: MessageContext = {
      schema: 's/x',
      table: 't.y',
      columns,
      keyColumns: ['üñï', 'id'],
      replica,
    };
    const keyOf = (r: Row) =>
      buildRowKey(
        ctx.schema,
        ctx.table,
        ctx.keyColumns.map((c) => r[c] ?? null),
      );
    const valueOf = (r: Row, cols: string[]) =>
      Object.fromEntries(cols.map((c) => [c, r[c] ?? null]));
    const headers = (operation: string, op: number) => ({
      operation,
      relation: [ctx.schema, ctx.table],
      lsn: '100',
      op_position: op,
      txids: [7],
    });
    const keyCols = replica === 'full' ? columns : ['id', 'üñï'];
    const before2 = rowAt(2);
    const after2 = { ...before2, v: 'changed' };
    const update2 =
      replica === 'full'
        ? { value: valueOf(after2, columns), old_value: { v: '/2/' } }
        : { value: valueOf(after2, ['id', 'üñï', 'v']) };
    const expected = [
      { key: keyOf(rowAt(1)), value: valueOf(rowAt(1), columns), headers: headers('insert', 0) },
      { key: keyOf(after2), ...update2, headers: headers('update', 2) },
      { key: keyOf(rowAt(3)), value: valueOf(rowAt(3), keyCols), headers: headers('delete', 4) },
      {
        key: keyOf(rowAt(4, 'moved/key')),
        value: valueOf(rowAt(4, 'moved/key'), columns),
        headers: headers('insert', 5),
      },
      { key: keyOf(rowAt(5)), value: valueOf(rowAt(5), keyCols), headers: headers('delete', 6) },
      {
        // The row's key (NULL in üñï) stays: sent whole, as an insert.
        key: keyOf(rowAt(6)),
        value: valueOf({ ...rowAt(6), 'na"me': 'whole' }, columns),
        headers: { ...headers('insert', 8), last: true },
      },
    ];
    const entries = transactionEntries(messageWriter(ctx), { xid: 7, commitLsn: 100n }, changes);
    assert.deepEqual(
      entries.map((e) => e.json),
      expected.map((m) => JSON.stringify(m)),
      replica,
    );
  }
});

test('a replica=full update without a key change carries old_value between value and headers', () => {
  const ctx: MessageContext = { ...context, replica: 'full' };
  const [entry] = transactionEntries(messageWriter(ctx), { xid: 3, commitLsn: 9n }, [
    { change: update(row(1, 'a"b'), row(1, 'c\\d')), position: 2 },
  ]);
  assert.equal(
    entry?.json,
    JSON.stringify({
      key: key(1),
      value: { id: '1', v: 'c\\d' },
      old_value: { v: 'a"b' },
      headers: {
        operation: 'update',
        relation: ['public', 't'],
        lsn: '9',
        op_position: 4,
        txids: [3],
        last: true,
      },
    }),
  );
});
