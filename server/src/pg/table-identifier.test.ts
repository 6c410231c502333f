import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  InvalidIdentifierError,
  parseColumnList,
  parseTableIdentifier,
  quoteIdentifier,
  quoteTableIdentifier,
} from './table-identifier.js';

test('parseTableIdentifier: unqualified names are in public, unquoted parts fold to lower case', () => {
  assert.deepEqual(parseTableIdentifier('items'), { schema: 'public', name: 'items' });
  assert.deepEqual(parseTableIdentifier('Items'), { schema: 'public', name: 'items' });
  assert.deepEqual(parseTableIdentifier('App.Items'), { schema: 'app', name: 'items' });
  assert.deepEqual(parseTableIdentifier('_t$1'), { schema: 'public', name: '_t$1' });
  // Postgres folds only ASCII in UTF-8 databases.
  assert.deepEqual(parseTableIdentifier('ÉTÉ'), { schema: 'public', name: 'ÉtÉ' });
});

test('parseTableIdentifier: quoted parts keep case, spaces, commas, dots and "" escapes', () => {
  assert.deepEqual(parseTableIdentifier('"Items"'), { schema: 'public', name: 'Items' });
  assert.deepEqual(parseTableIdentifier('"My Schema"."a.b, c"'), {
    schema: 'My Schema',
    name: 'a.b, c',
  });
  assert.deepEqual(parseTableIdentifier('"q""x"'), { schema: 'public', name: 'q"x' });
  assert.deepEqual(parseTableIdentifier('""""'), { schema: 'public', name: '"' });
  assert.deepEqual(parseTableIdentifier('Sch."T"'), { schema: 'sch', name: 'T' });
  assert.deepEqual(parseTableIdentifier('"Sch".t'), { schema: 'Sch', name: 't' });
  assert.deepEqual(parseTableIdentifier('" "'), { schema: 'public', name: ' ' });
  assert.deepEqual(parseTableIdentifier('"a/b"."日本"'), { schema: 'a/b', name: '日本' });
});

test('parseTableIdentifier: malformed input is an InvalidIdentifierError', () => {
  const bad = [
    '',
    '.',
    'a.',
    '.a',
    'a..b',
    'a.b.c',
    '"a"."b"."c"',
    '"',
    '"abc',
    '"a""',
    '"a"b',
    'a"b"',
    '""',
    '"".t',
    'a b',
    ' a',
    'a-b',
    '1abc',
    'a;drop',
    'a'.repeat(64),
    `"${'é'.repeat(32)}"`, // 64 bytes
  ];
  for (const text of bad) {
    assert.throws(
      () => parseTableIdentifier(text),
      (error: unknown) =>
        error instanceof InvalidIdentifierError &&
        error.name === 'InvalidIdentifierError' &&
        error.code === 'SLUICE_ERR_SHAPE_INVALID_IDENTIFIER' &&
        error.message.length > 0,
      `expected ${JSON.stringify(text)} to be rejected`,
    );
  }
  assert.throws(() => parseTableIdentifier('a.b.c'), /expected "table" or "schema.table"/);
  assert.throws(() => parseTableIdentifier('"abc'), /unterminated quoted identifier/);
  assert.doesNotThrow(() => parseTableIdentifier('a'.repeat(63)));
});

test('parseColumnList: the official client quotes every name and doubles inner quotes', () => {
  // What @electric-sql/client 1.5 sends for ["id", "a,b", 'q"x'].
  assert.deepEqual(parseColumnList('"id","a,b","q""x"'), ['id', 'a,b', 'q"x']);
  assert.deepEqual(parseColumnList('id,Title,"Title"'), ['id', 'title', 'Title']);
  assert.deepEqual(parseColumnList('"a.b"'), ['a.b']);
  assert.deepEqual(parseColumnList('x'), ['x']);
});

test('parseColumnList: empties, duplicates and stray quotes are rejected', () => {
  for (const text of [
    '',
    ',',
    'a,',
    ',a',
    'a,,b',
    '""',
    'a,"",b',
    'id,ID',
    '"id",id',
    '"a,b',
    '"a"x,b',
    'a, b',
  ]) {
    assert.throws(
      () => parseColumnList(text),
      InvalidIdentifierError,
      `expected ${JSON.stringify(text)} to be rejected`,
    );
  }
  assert.throws(() => parseColumnList('id,ID'), /listed more than once/);
});

test('quoteIdentifier always quotes and doubles inner quotes; round-trips through the parsers', () => {
  assert.equal(quoteIdentifier('id'), '"id"');
  assert.equal(quoteIdentifier('q"x'), '"q""x"');
  assert.equal(quoteTableIdentifier({ schema: 'public', name: 'A"b' }), '"public"."A""b"');
  const names = ['id', 'Mixed Case', 'a,b', 'q"x', '"', 'a.b', 'select'];
  assert.deepEqual(parseColumnList(names.map(quoteIdentifier).join(',')), names);
  for (const name of names) {
    assert.deepEqual(parseTableIdentifier(`${quoteIdentifier('S.s')}.${quoteIdentifier(name)}`), {
      schema: 'S.s',
      name,
    });
  }
});

test('a NUL character in a quoted name is refused: Postgres names cannot hold one', () => {
  const nul = /contains a NUL character \(%00\)/;
  assert.throws(() => parseTableIdentifier('"a\0b"'), InvalidIdentifierError);
  assert.throws(() => parseTableIdentifier('"a\0b"'), nul);
  assert.throws(() => parseTableIdentifier('"s\0".t'), nul);
  assert.throws(() => parseColumnList('id,"x\0"'), nul);
  // Unquoted, it was never a valid identifier character.
  assert.throws(() => parseTableIdentifier('a\0b'), /special characters/);
});
