import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  isSubsetQuery,
  parseSubsetBody,
  parseSubsetQuery,
  type SubsetParse,
} from './subset-request.js';

const errorsOf = (parsed: SubsetParse) => ('errors' in parsed ? parsed.errors : undefined);
const subsetOf = (parsed: SubsetParse) => ('subset' in parsed ? parsed.subset : undefined);

test('any subset__ parameter makes a GET a subset snapshot', () => {
  assert.equal(isSubsetQuery({ table: 'items', offset: '-1' }), false);
  assert.equal(isSubsetQuery({ table: 'items', subset__limit: '1' }), true);
  assert.equal(isSubsetQuery({ table: 'items', subset__where_expr: '{}' }), true);
});

test('GET: subset__params is a JSON object, values as text', () => {
  const parsed = parseSubsetQuery({
    subset__where: 'id > $1 AND title = $2',
    subset__params: '{"1":"5","2":"x y"}',
    subset__order_by: 'id',
    subset__limit: '10',
    subset__offset: '0',
    subset__where_expr: '{"type":"func"}',
  });
  assert.deepEqual(parsed, {
    subset: {
      where: 'id > $1 AND title = $2',
      params: ['5', 'x y'],
      limit: 10,
      offset: 0,
      orderBy: 'id',
    },
  });
});

test('POST: top-level or nested fields, numbers, booleans and bigints as text', () => {
  const body = {
    where: 'a = $1 AND b = $2 AND c = $3',
    params: { 2: 7, 1: '9007199254740993', 3: true },
  };
  const expected = {
    subset: {
      where: body.where,
      params: ['9007199254740993', '7', 'true'],
      limit: undefined,
      offset: undefined,
      orderBy: undefined,
    },
  };
  assert.deepEqual(parseSubsetBody(body), expected);
  assert.deepEqual(parseSubsetBody({ subset: body, where_expr: {} }), expected);
  assert.deepEqual(subsetOf(parseSubsetBody({ where: 'a = $1', params: ['x'] }))?.params, ['x']);
  assert.deepEqual(parseSubsetBody({}), {
    subset: {
      where: undefined,
      params: [],
      limit: undefined,
      offset: undefined,
      orderBy: undefined,
    },
  });
});

test('every problem is named at once, by subset field', () => {
  assert.deepEqual(
    parseSubsetQuery({
      subset__params: '{"1":"a"',
      subset__limit: '0',
      subset__offset: '-1',
    }),
    {
      errors: {
        params: ['must be a JSON object such as {"1":"value"}'],
        limit: ['must be an integer of at least 1, got "0"'],
        offset: ['must be an integer of at least 0, got "-1"'],
        order_by: ['is required when limit or offset is given'],
      },
    },
  );
  assert.deepEqual(parseSubsetBody({ limit: 5 }), {
    errors: { order_by: ['is required when limit or offset is given'] },
  });
  assert.deepEqual(parseSubsetBody({ where: 'x', params: { 1: 'a', 3: 'c' } }), {
    errors: { params: ['must be numbered from 1 without gaps: 2 is missing'] },
  });
  assert.deepEqual(parseSubsetBody({ params: { 1: 'a' } }), {
    errors: { params: ['given without a where clause'] },
  });
  assert.deepEqual(parseSubsetBody({ where: 'x', params: { a: 'b', 1: null } }), {
    errors: {
      params: [
        '1: must be a string, a number or a boolean',
        '"a": keys must be integers from 1 to 999999',
      ],
    },
  });
  assert.deepEqual(parseSubsetBody({ where: 1, order_by: ['id'], limit: 1.5 }), {
    errors: {
      where: ['must be a string'],
      order_by: ['must be a string'],
      limit: ['must be an integer of at least 1, got 1.5'],
    },
  });
  assert.deepEqual(parseSubsetBody([1]), {
    errors: { body: ['must be a JSON object: {"where", "params", "limit", "offset", "order_by"}'] },
  });
  assert.deepEqual(errorsOf(parseSubsetBody({ limit: 1e300, order_by: 'id' })), {
    limit: ['must be an integer of at least 1, got 1e+300'],
  });
  assert.deepEqual(
    errorsOf(parseSubsetQuery({ subset__limit: ['1', '2'], subset__order_by: 'id' })),
    {
      limit: ['must be given once'],
    },
  );
});
