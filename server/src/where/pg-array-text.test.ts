import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PgArrayTextError, parseArrayText } from './pg-array-text.js';

const asText = (text: string) => text;
const asInt = (text: string) => {
  assert.match(text, /^-?\d+$/);
  return Number(text);
};

test('the empty array has no dimensions', () => {
  assert.deepEqual(parseArrayText('{}', asInt), { dims: [], lowerBounds: [], elements: [] });
});

test('one dimension, with NULL elements', () => {
  assert.deepEqual(parseArrayText('{1,2,NULL}', asInt), {
    dims: [3],
    lowerBounds: [1],
    elements: [1, 2, null],
  });
  assert.deepEqual(parseArrayText('{NULL}', asInt).elements, [null]);
  // array_in treats an unquoted NULL in any case as null (array_out quotes such strings).
  assert.deepEqual(parseArrayText('{null,Null}', asText).elements, [null, null]);
});

test('quoted elements: "NULL" is a string, escapes are removed, empty strings kept', () => {
  assert.deepEqual(parseArrayText('{"a b","c\\"d","NULL","","x\\\\y"}', asText), {
    dims: [5],
    lowerBounds: [1],
    elements: ['a b', 'c"d', 'NULL', '', 'x\\y'],
  });
  assert.deepEqual(
    parseArrayText('{"{","}",",","\\"\\\\",é😀,"\t",NULLS,"null"}', asText).elements,
    ['{', '}', ',', '"\\', 'é😀', '\t', 'NULLS', 'null'],
  );
});

test('unquoted elements keep characters that need no quoting', () => {
  assert.deepEqual(parseArrayText('{[1:2]=x,a:b,(1.5)}', asText).elements, [
    '[1:2]=x',
    'a:b',
    '(1.5)',
  ]);
});

test('multiple dimensions are flattened in row-major order', () => {
  assert.deepEqual(parseArrayText('{{1,2,3},{4,NULL,6}}', asInt), {
    dims: [2, 3],
    lowerBounds: [1, 1],
    elements: [1, 2, 3, 4, null, 6],
  });
  assert.deepEqual(parseArrayText('{{{1}},{{2}}}', asInt), {
    dims: [2, 1, 1],
    lowerBounds: [1, 1, 1],
    elements: [1, 2],
  });
});

test('explicit bounds', () => {
  assert.deepEqual(parseArrayText('[0:1]={5,6}', asInt), {
    dims: [2],
    lowerBounds: [0],
    elements: [5, 6],
  });
  assert.deepEqual(parseArrayText('[1:1][2:3]={{1,2}}', asInt), {
    dims: [1, 2],
    lowerBounds: [1, 2],
    elements: [1, 2],
  });
  assert.deepEqual(parseArrayText('[-3:-2]={"a b",NULL}', asText), {
    dims: [2],
    lowerBounds: [-3],
    elements: ['a b', null],
  });
});

test('another delimiter (box uses ";") and element parsers see unescaped text', () => {
  assert.deepEqual(parseArrayText('{(1,2),(0,0);(3,4),(1,1)}', asText, ';').elements, [
    '(1,2),(0,0)',
    '(3,4),(1,1)',
  ]);
  // The delimiter also separates sub-arrays.
  assert.deepEqual(parseArrayText('{{(1,2),(0,0);NULL};{(3,4),(1,1);(0,0),(0,0)}}', asText, ';'), {
    dims: [2, 2],
    lowerBounds: [1, 1],
    elements: ['(1,2),(0,0)', null, '(3,4),(1,1)', '(0,0),(0,0)'],
  });
  assert.throws(() => parseArrayText('{{1;2},{3;4}}', asText, ';'), PgArrayTextError);
  assert.deepEqual(
    parseArrayText('{"2024-01-01 00:00:00",NULL}', (t) => t.length),
    { dims: [2], lowerBounds: [1], elements: [19, null] },
  );
});

test('errors thrown by the element parser propagate unchanged', () => {
  const boom = new Error('boom');
  assert.throws(
    () =>
      parseArrayText('{1}', () => {
        throw boom;
      }),
    (e) => e === boom,
  );
});

test('malformed input throws PgArrayTextError', () => {
  const malformed = [
    '',
    '{',
    '}',
    '1,2',
    '{1,2',
    '{1,,2}',
    '{,1}',
    '{1,}',
    '{1,2}x',
    '{1} ',
    ' {1}',
    '{ 1}',
    '{1 ,2}',
    '{"a}',
    '{"a\\"}',
    '{"a"b}',
    '{a"b"}',
    '{a\\b}',
    '{a{b}',
    '{{1,2},{3}}',
    '{{1,2},3}',
    '{1,{2}}',
    '{{}}',
    '{{1},{}}',
    '[0:1]{5,6}',
    '[0:1]={5}',
    '[0:1]={}',
    '[1:0]={}',
    '[2:1]={1}',
    '[1:2]={{1,2}}',
    '[1:1][1:2]={1,2}',
    '[1]={1}',
    '[a:b]={1}',
    '[0:1]=',
    '{{{{{{{1}}}}}}}',
    '[2147483646:2147483647]={1,2}', // Postgres needs upper bound + 1 to fit in int4
    '[-2147483649:-2147483648]={1,2}',
    '{{1,2};{3,4}}', // sub-arrays are separated by the delimiter too
  ];
  for (const text of malformed) {
    assert.throws(
      () => parseArrayText(text, asText),
      (e) =>
        e instanceof PgArrayTextError &&
        e.code === 'SLUICE_ARRAY_TEXT' &&
        e.name === 'PgArrayTextError',
      JSON.stringify(text),
    );
  }
  assert.deepEqual(parseArrayText('{{{{{{1}}}}}}', asInt).dims, [1, 1, 1, 1, 1, 1]);
  assert.deepEqual(
    parseArrayText('[-2147483648:-2147483647]={1,2}', asInt).lowerBounds,
    [-2147483648],
  );
  assert.deepEqual(
    parseArrayText('[2147483645:2147483646]={1,2}', asInt).lowerBounds,
    [2147483645],
  );
  assert.throws(() => parseArrayText('{1}', asText, ''), PgArrayTextError);
  assert.throws(() => parseArrayText('{1}', asText, '"'), PgArrayTextError);
});
