import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONFIG_OPTIONS } from '../config/config-options.js';
import { compileNode } from './filter-evaluator.js';
import { filterSql } from './filter-sql.js';
import { compileWhere } from './where-compiler.js';
import { DEFAULT_WHERE_LIMITS, measureSyntaxTree } from './where-limits.js';
import { parseWhereClause } from './where-parser.js';

test('measureSyntaxTree counts syntax nodes and their nesting, not their fields', async () => {
  // A_Expr(=) > [String "=", ColumnRef > String "id", A_Const]
  const tree = await parseWhereClause('id = 1', DEFAULT_WHERE_LIMITS);
  assert.deepEqual(measureSyntaxTree(tree), { nodes: 5, depth: 3 });
  // A chain far deeper than any recursion could follow is measured all the same.
  let deep: unknown = { A_Const: { ival: { ival: 1 } } };
  for (let i = 0; i < 200_000; i++) deep = { BoolExpr: { boolop: 'NOT_EXPR', args: [deep] } };
  assert.deepEqual(measureSyntaxTree(deep), { nodes: 200_001, depth: 200_001 });
});

test('the longest clause allowed, nested as deeply as text allows, is parsed and refused', async () => {
  // Two characters per level: the deepest tree the length limit's maximum lets through.
  const longest = { ...DEFAULT_WHERE_LIMITS, maxLength: 16_384 };
  assert.throws(() => CONFIG_OPTIONS.whereMaxLength.parse('16385'));
  for (const where of [
    `1${'+1'.repeat(8_189)} = 1`,
    `${'- '.repeat(8_188)}x = 1`,
    `x${' IS NULL'.repeat(2_047)}`,
  ]) {
    assert.ok(where.length <= longest.maxLength);
    await assert.rejects(parseWhereClause(where, longest), /SLUICE_WHERE_MAX_DEPTH/);
  }
  // The parser still answers afterwards.
  assert.ok(await parseWhereClause('id = 1', DEFAULT_WHERE_LIMITS));
});

test('a clause as deep as the depth limit allows at most compiles, evaluates and prints', async () => {
  const maxDepth = 256;
  assert.throws(() => CONFIG_OPTIONS.whereMaxDepth.parse(String(maxDepth + 1)));
  const limits = { ...DEFAULT_WHERE_LIMITS, maxDepth };
  // = > + × (maxDepth − 2) > constant: exactly maxDepth levels.
  const where = `1${'+1'.repeat(maxDepth - 2)} = ${maxDepth - 1}`;
  const tree = await parseWhereClause(where, limits);
  assert.equal(measureSyntaxTree(tree).depth, maxDepth);
  const table = {
    name: 't',
    columns: new Map(),
    defaultText: { codePointOrder: true, caseMapping: 'ascii' as const },
  };
  const { root, constants } = compileWhere(tree, table, []);
  for (const constant of constants) constant.node.value = constant.text;
  assert.equal(compileNode(root)({}), true);
  assert.ok(filterSql(root).length > where.length);
  assert.ok(JSON.stringify(root).length > 0);
});
