import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildRowKey, relationKeyPrefix, rowKeyColumns } from './row-key.js';

// Expected strings are Electric's own build_key doctests (electric-sql/electric,
// packages/sync-service/lib/electric/replication/changes.ex), restated here.

test('buildRowKey: quoted parts joined by /', () => {
  assert.equal(buildRowKey('public', 'items', ['42']), '"public"."items"/"42"');
  assert.equal(buildRowKey('hello', 'world', ['b', 'd']), '"hello"."world"/"b"/"d"');
});

test('buildRowKey: a / inside a value is doubled, nothing else is escaped', () => {
  assert.equal(
    buildRowKey('hello', 'world', ['test/test', 'test']),
    '"hello"."world"/"test//test"/"test"',
  );
  assert.equal(
    buildRowKey('hello', 'world', ['test', 'test/test']),
    '"hello"."world"/"test"/"test//test"',
  );
  assert.equal(buildRowKey('s', 't', ['a"b', '\\', '//']), '"s"."t"/"a"b"/"\\"/"////"');
});

test('buildRowKey: NULL is an unquoted _, distinct from the string "_"; empty strings stay quoted', () => {
  assert.equal(buildRowKey('hello', 'world', ['1', null, '2']), '"hello"."world"/"1"/_/"2"');
  assert.equal(buildRowKey('hello', 'world', ['1', '_', '2']), '"hello"."world"/"1"/"_"/"2"');
  assert.equal(buildRowKey('hello', 'world', ['1', '', '2']), '"hello"."world"/"1"/""/"2"');
  assert.equal(buildRowKey('a', 'b', ['', '']), '"a"."b"/""/""');
});

test('buildRowKey: dots and slashes in relation names are doubled, quotes are not', () => {
  assert.equal(buildRowKey('a"."b', 'c', ['']), '"a".."b"."c"/""');
  assert.equal(buildRowKey('a', 'b"."c', ['']), '"a"."b".."c"/""');
  assert.equal(buildRowKey('a', 'b"/"', ['']), '"a"."b"//""/""');
});

test('the relation prefix doubles dots and slashes in names', () => {
  assert.equal(relationKeyPrefix('my.schema', 'a/b'), '"my..schema"."a//b"');
  assert.equal(buildRowKey('my.schema', 'a/b', ['x/y', null]), '"my..schema"."a//b"/"x//y"/_');
});

test('rowKeyColumns: primary key order, else all columns sorted by name (byte order)', () => {
  const columns = ['b', 'a', 'B', 'é', 'z', '\u{1F600}', '\uFF5E'].map((name) => ({ name }));
  assert.deepEqual(rowKeyColumns({ primaryKey: ['z', 'a'], columns } as never), ['z', 'a']);
  // UTF-8 byte order puts U+FF5E before U+1F600, unlike JavaScript's UTF-16 order.
  assert.deepEqual(rowKeyColumns({ primaryKey: [], columns } as never), [
    'B',
    'a',
    'b',
    'z',
    'é',
    '\uFF5E',
    '\u{1F600}',
  ]);
});
