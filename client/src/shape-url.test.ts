import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReservedParamError } from './errors.js';
import { resolveHeaders, resolveParams, validateParams } from './shape-params.js';
import { defaultSocketUrl, defaultStatusUrl, shapeUrl } from './shape-url.js';

test('the status URL sits next to the shape endpoint, prefix kept', () => {
  assert.equal(defaultStatusUrl('http://a.test/v1/shape'), 'http://a.test/v1/status');
  assert.equal(
    defaultStatusUrl('https://a.test:8443/sync/v1/shape?x=1'),
    'https://a.test:8443/sync/v1/status',
  );
  assert.equal(defaultStatusUrl('http://a.test/api/items-proxy'), 'http://a.test/v1/status');
});

test('the socket URL sits next to the shape endpoint too, as ws or wss', () => {
  assert.equal(defaultSocketUrl('http://a.test/v1/shape'), 'ws://a.test/v1/ws');
  assert.equal(
    defaultSocketUrl('https://a.test:8443/sync/v1/shape?x=1'),
    'wss://a.test:8443/sync/v1/ws',
  );
  assert.equal(defaultSocketUrl('http://a.test/api/items-proxy'), 'ws://a.test/v1/ws');
});

test('a plan becomes offset, handle, cursor, live and cache-buster; log always; sorted', () => {
  const params = { table: 'items', params: { '1': 'a b' } };
  const url = shapeUrl(
    'http://a.test/v1/shape?secret=s',
    params,
    { offset: '5_2', handle: 'H', live: true, cursor: '', cacheBuster: undefined },
    'changes_only',
  );
  assert.equal(
    url.toString(),
    'http://a.test/v1/shape?cursor=&handle=H&live=true&log=changes_only&offset=5_2&params%5B1%5D=a+b&secret=s&table=items',
  );
  const refresh = shapeUrl(
    'http://a.test/v1/shape',
    { table: 'items' },
    { offset: '-1', live: false, cacheBuster: 'fallback_x' },
    'full',
  );
  assert.equal(refresh.search, '?cache-buster=fallback_x&log=full&offset=-1&table=items');
});

test('params: functions resolved per call, columns quoted, params arrays numbered, log left out', async () => {
  let calls = 0;
  const resolved = await resolveParams({
    table: 'items',
    columns: ['id', 'a"b'],
    params: ['x', 'y'],
    log: 'changes_only',
    where: undefined,
    tags: ['a', 'b'],
    user: () => Promise.resolve(`u${++calls}`),
    filter: () => ({ k: 'v' }),
  });
  assert.deepEqual(resolved, {
    table: 'items',
    columns: '"id","a""b"',
    params: { 1: 'x', 2: 'y' },
    tags: 'a,b',
    user: 'u1',
    filter: { k: 'v' },
  });
  assert.equal((await resolveParams({ user: () => Promise.resolve(`u${++calls}`) })).user, 'u2');
  assert.deepEqual(await resolveParams(undefined), {});
});

test('headers: values and (async) functions', async () => {
  assert.deepEqual(
    await resolveHeaders({ a: '1', b: () => '2', c: async () => Promise.resolve('3') }),
    { a: '1', b: '2', c: '3' },
  );
  assert.deepEqual(await resolveHeaders(undefined), {});
});

test('custom params may not take the names the stream sets', () => {
  for (const name of ['offset', 'handle', 'live', 'cursor', 'cache-buster']) {
    assert.throws(() => validateParams({ [name]: 'x' }), ReservedParamError);
  }
  assert.doesNotThrow(() => validateParams({ table: 'x', where: 'y', log: 'full', secret: 's' }));
});
