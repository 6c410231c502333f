import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Row } from '../pg/transaction.js';
import type { WhereColumn, WhereTable } from '../where/where-columns.js';
import { compileWhere } from '../where/where-compiler.js';
import { DEFAULT_WHERE_LIMITS } from '../where/where-limits.js';
import { parseWhereClause } from '../where/where-parser.js';
import type { SubqueryTable } from '../where/where-context.js';
import { SubqueryResult } from './subquery-result.js';
import { SubqueryState } from './subquery-state.js';

const TEXT_RULES = { codePointOrder: true, caseMapping: 'ascii' as const };

function table(
  name: string,
  columns: Record<string, 'int4' | 'text' | 'bool'>,
  notNull = false,
): WhereTable {
  const entries = Object.entries(columns).map(([column, scalar]): [string, WhereColumn] => [
    column,
    {
      name: column,
      type: { scalar, array: false },
      typeName: scalar,
      varchar: false,
      generated: false,
      notNull,
      text: TEXT_RULES,
      deterministic: true,
      collation: 'default',
      defaultCollation: true,
    },
  ]);
  return { name, columns: new Map(entries), defaultText: TEXT_RULES };
}

const POSTS = table('posts', { id: 'int4', author: 'int4', title: 'text' });
const USERS: SubqueryTable = {
  schema: 'public',
  name: 'users',
  oid: 42,
  columns: table('users', { id: 'int4', active: 'bool', org: 'int4' }),
};

const ORGS: SubqueryTable = {
  schema: 'public',
  name: 'orgs',
  oid: 43,
  columns: table('orgs', { id: 'int4', active: 'bool' }),
};

const POSTS_NOT_NULL = table('posts', { id: 'int4', author: 'int4', title: 'text' }, true);

async function stateOf(where: string, posts = POSTS): Promise<SubqueryState> {
  const tree = await parseWhereClause(where, DEFAULT_WHERE_LIMITS);
  const tables = new Map([
    [JSON.stringify(['public', 'users']), USERS],
    [JSON.stringify(['public', 'orgs']), ORGS],
  ]);
  const { root, constants } = compileWhere(tree, posts, [], tables);
  for (const constant of constants) constant.node.value = constant.text;
  return new SubqueryState('handle-1', root);
}

const result = (...values: (string | null)[]) =>
  new SubqueryResult(
    1,
    values.map((value) => [value]),
  );

test('SubqueryResult answers IN with SQL NULL rules', () => {
  const plain = result('1', '2');
  assert.equal(plain.includes(['1']), true);
  assert.equal(plain.includes(['3']), false);
  assert.equal(plain.includes([null]), null); // NULL IN (1, 2)
  assert.equal(result().includes([null]), false); // NULL IN (empty)
  assert.equal(result('1', null).includes(['3']), null); // 3 IN (1, NULL)
  const pairs = new SubqueryResult(2, [
    ['1', 'a'],
    ['2', null],
  ]);
  assert.equal(pairs.includes(['1', 'a']), true);
  assert.equal(pairs.includes(['2', 'b']), null); // (2, b) = (2, NULL) is NULL
  assert.equal(pairs.includes(['3', 'b']), false);
  assert.equal(pairs.includes(['1', null]), null);
  assert.deepEqual(pairs.keysNotIn(new SubqueryResult(2, [['1', 'a']])), []);
});

test('tags: one per disjunct, a hash at subquery positions, 1 at plain ones, empty elsewhere', async () => {
  const state = await stateOf(`author IN (SELECT id FROM users WHERE active) OR title = 'x'`);
  state.setResults(new Map([[0, result('1')]]));
  const row = { id: '7', author: '1', title: 'y' };
  const { tags, active_conditions } = state.rowTags(row);
  const hash = state.hash(state.subqueries[0]!, ['1']);
  assert.match(hash, /^[0-9a-f]{32}$/);
  assert.deepEqual(tags, [`${hash}/`, '/1']);
  assert.deepEqual(active_conditions, [true, false]);
  assert.equal(state.matches(row), true);
  assert.equal(state.matches({ id: '8', author: '2', title: 'y' }), false);
  assert.equal(state.matches({ id: '9', author: '2', title: 'x' }), true);
  // Stable per shape, different between shapes.
  const other = new SubqueryState(
    'handle-2',
    (await stateOf('author IN (SELECT id FROM users)')).subqueries[0]!,
  );
  assert.notEqual(other.hash(other.subqueries[0]!, ['1']), hash);
});

test('compare: values entering an IN result move rows in, leaving ones move them out', async () => {
  const state = await stateOf('author IN (SELECT id FROM users WHERE active) AND id > 0');
  state.setResults(new Map([[0, result('1', '2')]]));
  const node = state.subqueries[0]!;
  const change = state.compare(new Map([[0, result('2', '3')]]));
  assert.equal(change.restart, undefined);
  assert.deepEqual(change.moveOut, [{ pos: 0, value: state.hash(node, ['1']) }]);
  assert.deepEqual(change.moveIn, [{ pos: 0, value: state.hash(node, ['3']) }]);
  assert.deepEqual(change.moveInTuples, [{ node, tuples: [['3']] }]);
});

test('compare under NOT IN: the other way round, and a restart where tags cannot tell', async () => {
  const state = await stateOf('author NOT IN (SELECT id FROM users WHERE active)');
  state.setResults(new Map([[0, result('1', '2')]]));
  const node = state.subqueries[0]!;
  const change = state.compare(new Map([[0, result('2', '3')]]));
  assert.deepEqual(change.moveOut, [{ pos: 0, value: state.hash(node, ['3']) }]);
  assert.deepEqual(change.moveIn, [{ pos: 0, value: state.hash(node, ['1']) }]);
  assert.deepEqual(state.rowTags({ id: '1', author: '5', title: null }).active_conditions, [true]);
  // A NULL entering the result makes every NOT IN row NULL: no pattern says that.
  assert.match(state.compare(new Map([[0, result('1', '2', null)]])).restart ?? '', /NOT IN/);
  // So does the result becoming empty (NULL NOT IN (empty) is true)…
  assert.match(state.compare(new Map([[0, result()]])).restart ?? '', /NOT IN/);
  // …unless the outer column is NOT NULL: then tags tell every move.
  const notNull = await stateOf(
    'author NOT IN (SELECT id FROM users WHERE active)',
    POSTS_NOT_NULL,
  );
  notNull.setResults(new Map([[0, result('1')]]));
  const emptied = notNull.compare(new Map([[0, result()]]));
  assert.equal(emptied.restart, undefined);
  assert.deepEqual(emptied.moveIn, [
    { pos: 0, value: notNull.hash(notNull.subqueries[0]!, ['1']) },
  ]);
  // A composite NOT IN on NOT NULL columns moves by tags too.
  const pairs = await stateOf('(id, author) NOT IN (SELECT id, org FROM users)', POSTS_NOT_NULL);
  const pair = (...tuples: [string, string][]) => new SubqueryResult(2, tuples);
  pairs.setResults(new Map([[0, pair(['1', '2'])]]));
  assert.equal(pairs.compare(new Map([[0, pair(['1', '2'], ['3', '4'])]])).restart, undefined);
});

test('mayChangeResults: only changes that enter, leave or alter a subquery row cost a query', async () => {
  const state = await stateOf('author IN (SELECT id FROM users WHERE active)');
  const relation = { oid: 42, schema: 'public', name: 'users' } as never;
  const user = (id: string, active: string, org = '0'): Row => ({ id, active, org });
  const update = (before: Row, after: Row) => [
    { kind: 'update' as const, relation, oldRow: before, newRow: after },
  ];
  assert.equal(state.mayChangeResults(update(user('1', 't', '0'), user('1', 't', '1'))), false);
  assert.equal(state.mayChangeResults(update(user('1', 'f'), user('1', 'f', '2'))), false);
  assert.equal(state.mayChangeResults(update(user('1', 'f'), user('1', 't'))), true);
  assert.equal(state.mayChangeResults(update(user('1', 't'), user('2', 't'))), true);
  assert.equal(
    state.mayChangeResults([{ kind: 'insert', relation, newRow: user('3', 'f') }]),
    false,
  );
  assert.equal(
    state.mayChangeResults([{ kind: 'delete', relation, oldRow: user('3', 't') }]),
    true,
  );
  const elsewhere = { oid: 7, schema: 'public', name: 'other' } as never;
  assert.equal(
    state.mayChangeResults([{ kind: 'insert', relation: elsewhere, newRow: user('3', 't') }]),
    false,
  );
});

test('mayChangeResults: a change of a table only a nested subquery reads always may', async () => {
  const state = await stateOf(
    'author IN (SELECT id FROM users WHERE org IN (SELECT id FROM orgs WHERE active))',
  );
  const relation = { oid: 43, schema: 'public', name: 'orgs' } as never;
  const row: Row = { id: '1', active: 'f' };
  assert.equal(state.mayChangeResults([{ kind: 'insert', relation, newRow: row }]), true);
});

test('subqueries only under AND, OR and NOT; at most 64 positions', async () => {
  await assert.rejects(
    stateOf('(author IN (SELECT id FROM users)) IS TRUE'),
    /only be combined with AND, OR and NOT/,
  );
  const wide = Array.from({ length: 9 }, (_, i) => `(id = ${i} OR title = '${i}')`).join(' AND ');
  await assert.rejects(
    stateOf(`author IN (SELECT id FROM users) AND ${wide}`),
    /disjunctive normal form/,
  );
});
