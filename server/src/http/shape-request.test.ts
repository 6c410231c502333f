import assert from 'node:assert/strict';
import { test } from 'node:test';
import { definitionKey, type ShapeDefinition } from '../shapes/shape-definition.js';
import {
  isValidationErrors,
  parseShapeRequest,
  type ShapeRequest,
  type ValidationErrors,
} from './shape-request.js';

type Query = Parameters<typeof parseShapeRequest>[0];

const BASE: Query = { table: 'items', offset: '-1' };

function accepted(query: Query): ShapeRequest {
  const result = parseShapeRequest({ ...BASE, ...query });
  if (isValidationErrors(result)) {
    assert.fail(`expected the request to be accepted, got ${JSON.stringify(result)}`);
  }
  return result;
}

function refused(query: Query): ValidationErrors {
  const result = parseShapeRequest({ ...BASE, ...query });
  assert.ok(isValidationErrors(result), `expected errors, got ${JSON.stringify(result)}`);
  return result;
}

test('params[1], params[2] become the ordered params list', () => {
  const { definition } = accepted({
    where: 'id = $1 OR id = $2',
    'params[1]': '5',
    'params[2]': 'six',
  });
  assert.deepEqual(definition, {
    table: { schema: 'public', name: 'items' },
    columns: undefined,
    replica: 'default',
    log: 'full',
    where: 'id = $1 OR id = $2',
    params: ['5', 'six'],
  });
});

test('params are ordered by number, not by the order of the query or as strings', () => {
  const query: Query = { where: 'x' };
  for (let i = 11; i >= 1; i--) query[`params[${i}]`] = `v${i}`;
  const { definition } = accepted(query);
  assert.deepEqual(definition.params, [
    'v1',
    'v2',
    'v3',
    'v4',
    'v5',
    'v6',
    'v7',
    'v8',
    'v9',
    'v10',
    'v11',
  ]);
});

test('param values are kept verbatim, empty strings included', () => {
  const { definition } = accepted({
    where: 'a = $1 AND b = $2',
    'params[1]': '',
    'params[2]': " it's, [1] ",
  });
  assert.deepEqual(definition.params, ['', " it's, [1] "]);
});

test('a where clause without params carries an empty params list', () => {
  const { definition } = accepted({ where: 'id = 5' });
  assert.equal(definition.where, 'id = 5');
  assert.deepEqual(definition.params, []);
});

test('a definition without where has neither a where nor a params key', () => {
  const { definition } = accepted({});
  assert.equal('where' in definition, false);
  assert.equal('params' in definition, false);
  assert.deepEqual(Object.keys(definition).sort(), ['columns', 'log', 'replica', 'table']);
});

test('params[2] without params[1] is refused under params', () => {
  const errors = refused({ where: 'id = $2', 'params[2]': '5' });
  assert.deepEqual(errors, {
    params: ['must be numbered from 1 without gaps: params[1] is missing'],
  });
});

test('a gap in the numbering names the first missing param', () => {
  const errors = refused({ where: 'x', 'params[1]': 'a', 'params[3]': 'c', 'params[4]': 'd' });
  assert.deepEqual(errors, {
    params: ['must be numbered from 1 without gaps: params[2] is missing'],
  });
});

for (const key of [
  'params[a]',
  'params[0]',
  'params[01]',
  'params[-1]',
  'params[1.0]',
  'params[]',
]) {
  test(`${key} is refused: keys must be integers from 1`, () => {
    const errors = refused({ where: 'x', 'params[1]': 'ok', [key]: 'v' });
    assert.deepEqual(errors, { params: [`${key}: keys must be integers from 1 to 999999`] });
  });
}

test('a bad key alone is reported once, without a spurious numbering error', () => {
  const errors = refused({ where: 'x', 'params[0]': 'v' });
  assert.deepEqual(errors, { params: ['params[0]: keys must be integers from 1 to 999999'] });
});

test('a param given twice is refused', () => {
  const errors = refused({ where: 'x', 'params[1]': ['a', 'b'] });
  assert.deepEqual(errors, { params: ['params[1] must be given once'] });
});

test('params without a where clause are refused', () => {
  const errors = refused({ 'params[1]': '5' });
  assert.deepEqual(errors, { params: ['given without a where clause'] });
});

test('where given twice is refused, without also blaming the params', () => {
  assert.deepEqual(refused({ where: ['a = 1', 'b = 2'] }), { where: ['must be given once'] });
  assert.deepEqual(refused({ where: ['a = $1', 'a = $1'], 'params[1]': '1' }), {
    where: ['must be given once'],
  });
});

test('params problems are reported together with the other parameters', () => {
  const result = parseShapeRequest({ offset: 'nonsense', 'params[x]': '1' });
  assert.ok(isValidationErrors(result));
  assert.deepEqual(Object.keys(result).sort(), ['offset', 'params', 'table']);
  assert.deepEqual(result.params, [
    'params[x]: keys must be integers from 1 to 999999',
    // The only key is not a number: there are no params, so none is "without a where clause".
  ]);
});

test('keys that only look like params are not params', () => {
  const { definition } = accepted({ where: 'x', 'params[1]': 'a', 'xparams[2]': 'b' });
  assert.deepEqual(definition.params, ['a']);
});

// definitionKey: shapes stored before where clauses existed must keep their keys.

const plain: ShapeDefinition = {
  table: { schema: 'public', name: 'items' },
  columns: undefined,
  replica: 'default',
  log: 'full',
};

test('definitionKey of a definition without where is the pre-where key', () => {
  const parsed = accepted({}).definition;
  assert.equal(definitionKey(parsed), JSON.stringify(['public', 'items', null, 'default', 'full']));
  assert.equal(definitionKey(plain), JSON.stringify(['public', 'items', null, 'default', 'full']));

  const withColumns = accepted({
    table: 'Sch.Tbl',
    columns: 'id,title',
    replica: 'full',
    log: 'changes_only',
  }).definition;
  assert.equal(
    definitionKey(withColumns),
    JSON.stringify(['sch', 'tbl', ['id', 'title'], 'full', 'changes_only']),
  );
});

test('definitionKey tells where clauses and params apart', () => {
  const key = (where: string | undefined, params?: string[]) =>
    definitionKey(where === undefined ? plain : { ...plain, where, params });
  const keys = [
    key(undefined),
    key('id = 5', []),
    key('id = 6', []),
    key('id = $1', ['5']),
    key('id = $1', ['6']),
    key('id = $1 OR id = $2', ['1', '2']),
    key('id = $1 OR id = $2', ['2', '1']),
    key('id = $1 OR id = $2', ['12', '']),
    key('id = $1 OR id = $2', ['1,2', '']),
    key('id = $1 OR id = $2', ['1', '2,']),
  ];
  assert.equal(new Set(keys).size, keys.length, keys.join('\n'));
});

test('definitionKey: a where without a params field keys like one with no params', () => {
  assert.equal(
    definitionKey({ ...plain, where: 'id = 5' }),
    definitionKey({ ...plain, where: 'id = 5', params: [] }),
  );
  assert.equal(
    definitionKey(accepted({ where: 'id = $1', 'params[1]': '5' }).definition),
    definitionKey({ ...plain, where: 'id = $1', params: ['5'] }),
  );
});

test('a repeated param key is reported alone, not also as a gap', () => {
  const errors = refused({ where: 'x', 'params[1]': ['a', 'b'], 'params[2]': 'c' });
  assert.deepEqual(errors, { params: ['params[1] must be given once'] });
});

test('a bare params= is refused, naming the expected form', () => {
  const errors = refused({ where: 'x = $1', params: '5' });
  assert.deepEqual(errors, { params: ['must be given as params[1]=…, params[2]=…'] });
});

test('a repeated cursor is refused', () => {
  const errors = refused({ offset: '1_0', handle: 'h', live: 'true', cursor: ['1', '2'] });
  assert.deepEqual(errors, { cursor: ['must be given once'] });
});

test('a handle must be made of the characters Sluice uses: it is echoed in headers', () => {
  for (const handle of ['h\r\nx-injected: 1', 'h\n', 'hé', 'h\u{1F600}', 'a b', 'h'.repeat(129)]) {
    const errors = refused({ offset: '1_0', handle });
    assert.deepEqual(errors, { handle: ['must be 1 to 128 letters, digits, _ or -'] }, handle);
  }
  for (const handle of ['3833821-1721812114261', 'a1b2c3d4-fallback-17000000000001a2b', 'A_z']) {
    assert.equal(accepted({ offset: '1_0', handle }).handle, handle);
  }
  // Ignored when starting over, as before.
  assert.equal(accepted({ offset: '-1', handle: 'h\r\n' }).handle, undefined);
});

test('a NUL character in a param, the table or the columns is refused, naming where', () => {
  const base = { table: 'items', offset: '-1' };
  assert.deepEqual(refused({ ...base, where: 'id = $1', 'params[1]': 'a\0b' }), {
    params: ['params[1] must not contain a NUL character (%00)'],
  });
  assert.match(refused({ ...base, table: '"a\0b"' }).table?.[0] ?? '', /NUL character/);
  assert.match(refused({ ...base, columns: 'id,"a\0b"' }).columns?.[0] ?? '', /NUL character/);
});

test('live_sse (or experimental_live_sse when live_sse is absent) asks a live request for SSE', () => {
  const live = { offset: '0_inf', handle: 'h-1', live: 'true' };
  assert.equal(accepted(live).sse, false);
  assert.equal(accepted({ ...live, live_sse: 'true' }).sse, true);
  assert.equal(accepted({ ...live, live_sse: '' }).sse, true, 'any value but false');
  assert.equal(accepted({ ...live, experimental_live_sse: 'true' }).sse, true);
  assert.equal(accepted({ ...live, live_sse: 'false', experimental_live_sse: 'true' }).sse, false);
  assert.equal(accepted({ ...live, live_sse: 'false' }).sse, false);
});

test('live_sse without live is refused under the name given', () => {
  const caughtUp = { offset: '0_inf', handle: 'h-1' };
  assert.deepEqual(refused({ ...caughtUp, live_sse: 'true' }), {
    live_sse: ['is only allowed with live=true'],
  });
  assert.deepEqual(refused({ ...caughtUp, experimental_live_sse: 'true' }), {
    experimental_live_sse: ['is only allowed with live=true'],
  });
  assert.equal(accepted({ ...caughtUp, live_sse: 'false' }).sse, false);
  assert.deepEqual(refused({ ...caughtUp, live: 'true', live_sse: ['true', 'true'] }), {
    live_sse: ['must be given once'],
  });
});
