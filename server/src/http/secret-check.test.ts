import assert from 'node:assert/strict';
import { test } from 'node:test';
import Fastify from 'fastify';
import { SecretCheck } from './secret-check.js';

/** The status of a request to a route guarded by the secret `s3cret`. */
async function statusOf(url: string, headers: Record<string, string> = {}): Promise<number> {
  const app = Fastify();
  const check = new SecretCheck('s3cret');
  app.get('/', (request, reply) => (check.authorise(request, reply) ? 'ok' : reply));
  const response = await app.inject({ method: 'GET', url, headers });
  await app.close();
  return response.statusCode;
}

test('the secret is accepted as secret=<value> or Authorization: Bearer <value>', async () => {
  assert.equal(await statusOf('/?secret=s3cret'), 200);
  assert.equal(await statusOf('/', { authorization: 'Bearer s3cret' }), 200);
  assert.equal(await statusOf('/', { authorization: 'bearer  s3cret ' }), 200);
  // One right is enough when both are given.
  assert.equal(await statusOf('/?secret=wrong', { authorization: 'Bearer s3cret' }), 200);
});

test('anything else is a 401: missing, wrong, a prefix, another scheme, given twice', async () => {
  assert.equal(await statusOf('/'), 401);
  for (const wrong of ['s3cre', 's3crets', 'S3CRET', '']) {
    assert.equal(await statusOf(`/?secret=${wrong}`), 401, wrong);
    assert.equal(await statusOf('/', { authorization: `Bearer ${wrong}` }), 401, wrong);
  }
  assert.equal(await statusOf('/', { authorization: 'Basic s3cret' }), 401);
  assert.equal(await statusOf('/', { authorization: 's3cret' }), 401);
  assert.equal(await statusOf('/?secret=s3cret&secret=s3cret'), 401);
});
