import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalWhere } from './canonical-where.js';

test('spacing, keyword and unquoted-name case and redundant parentheses read alike', () => {
  const one = canonicalWhere('id>1 and n=2');
  assert.ok(one);
  for (const spelling of [
    'id > 1 AND n = 2',
    '((id>1)) AnD (n=2)',
    'ID>1\nand\tN=2',
    '"id">1 and n=2',
  ]) {
    assert.equal(canonicalWhere(spelling), one, spelling);
  }
});

test('other constants, names, operators and clauses read differently', () => {
  const forms = ['id > 1', 'id > 2', 'id >= 1', 'id > 1.0', "id > '1'", '"ID" > 1', 'id > $1'];
  const keys = forms.map(canonicalWhere);
  assert.equal(new Set(keys).size, forms.length);
  // Parts the parser refuses later keep the clause apart from the one it hides them behind.
  assert.notEqual(canonicalWhere('true ORDER BY 1'), canonicalWhere('true'));
});

test('text the where parser refuses has no canonical form: it keys on its own text', () => {
  for (const where of ['id = 1\0junk', 'U&"id" > 1', 'x = $$a$$', 'x = $a$b$a$', '1 x 1']) {
    assert.equal(canonicalWhere(where), undefined, where);
  }
  assert.equal(canonicalWhere(`x = '${'a'.repeat(16_384)}'`), undefined);
  // Deeper than any depth limit allows: never printed (that overflowed the stack).
  assert.equal(canonicalWhere(`id${'+1'.repeat(2000)} = 1`), undefined);
  assert.ok(canonicalWhere(`id${'+1'.repeat(200)} = 1`));
});
