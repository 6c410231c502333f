import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../config/load-config.js';
import { SluiceError } from '../errors/sluice-error.js';
import { parseTableList, TablePolicy } from './table-policy.js';

test('SLUICE_TABLES entries are read like the table parameter, or as schema.*', () => {
  assert.deepEqual(parseTableList('items'), [{ schema: 'public', name: 'items' }]);
  assert.deepEqual(parseTableList('Sales.Orders, audit.*'), [
    { schema: 'sales', name: 'orders' },
    { schema: 'audit', name: undefined },
  ]);
  // Commas and dots inside double quotes belong to the name; "" is one quote.
  assert.deepEqual(parseTableList('"My Schema"."a,b",  "x.y".*,"q""t".t'), [
    { schema: 'My Schema', name: 'a,b' },
    { schema: 'x.y', name: undefined },
    { schema: 'q"t', name: 't' },
  ]);
  // A quoted * is a table named "*", not every table.
  assert.deepEqual(parseTableList('s."*"'), [{ schema: 's', name: '*' }]);
});

test('a bad SLUICE_TABLES is a ConfigError naming every bad entry', () => {
  for (const [text, count] of [
    ['a,,b', 1],
    ['a,', 1],
    ['a b', 1],
    ['a.b.c', 1],
    ['*', 1],
    ['.*', 1],
    ['"unterminated.t', 1],
    ['a b, c.d.e, ok', 2],
  ] as const) {
    assert.throws(
      () => parseTableList(text),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, text);
        assert.equal(error.problems.length, count, `${text}: ${error.problems.join('; ')}`);
        for (const problem of error.problems) assert.match(problem, /^SLUICE_TABLES: /, text);
        return true;
      },
    );
  }
});

function refusal(policy: TablePolicy, schema: string, name: string): string | undefined {
  try {
    policy.check({ schema, name });
    return undefined;
  } catch (error) {
    assert.ok(error instanceof SluiceError);
    assert.equal(error.code, 'SLUICE_ERR_TABLE_NOT_SERVED');
    assert.equal(error.details.field, 'table');
    return error.message;
  }
}

test('system schemas are never served, whatever the list says', () => {
  const everything = new TablePolicy(undefined, 'auto');
  const listed = TablePolicy.fromConfig({
    tables: 'pg_catalog.*, information_schema.sql_features, pg_toast.*, pg_temp_3.t',
    publish: 'auto',
  });
  for (const policy of [everything, listed]) {
    for (const [schema, name] of [
      ['pg_catalog', 'pg_authid'],
      ['information_schema', 'sql_features'],
      ['pg_toast', 'pg_toast_2619'],
      ['pg_temp_3', 't'],
      ['pg_anything', 't'],
    ]) {
      assert.match(refusal(policy, schema!, name!) ?? '', /system schemas/, `${schema}.${name}`);
    }
  }
  assert.equal(refusal(everything, 'public', 'items'), undefined);
  assert.equal(refusal(everything, 'PG_CATALOG', 'x'), undefined); // a user schema (quoted)
});

test('with SLUICE_TABLES set, only the listed tables and schemas are served', () => {
  const policy = TablePolicy.fromConfig({ tables: 'items, audit.*', publish: 'manual' });
  assert.equal(policy.publish, 'manual');
  assert.equal(refusal(policy, 'public', 'items'), undefined);
  assert.equal(refusal(policy, 'audit', 'anything'), undefined);
  assert.match(refusal(policy, 'public', 'secrets') ?? '', /"public"."secrets".*SLUICE_TABLES/);
  assert.match(refusal(policy, 'Audit', 'x') ?? '', /not in the server's table list/);
  assert.match(refusal(policy, 'other', 'items') ?? '', /not in the server's table list/);
});
