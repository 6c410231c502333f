import assert from 'node:assert/strict';
import { test } from 'node:test';
import cors from '@fastify/cors';
import Fastify from 'fastify';
import { sendShapeAnswer } from './send-shape-answer.js';
import type { ShapeAnswer } from './shape-answer.js';

/** The response to `answer`, sent with `headers` on the request. */
async function sent(answer: ShapeAnswer, headers: Record<string, string> = {}) {
  const app = Fastify();
  app.get('/', async (_request, reply) => sendShapeAnswer(reply, answer));
  const response = await app.inject({ method: 'GET', url: '/', headers });
  await app.close();
  return response;
}

const ANSWER: ShapeAnswer = {
  status: 200,
  headers: { 'electric-handle': 'h', 'cache-control': 'public, max-age=5', etag: '"h:-1:0_0"' },
  body: '[]',
};

test('an answer is sent as JSON with its status and headers', async () => {
  const response = await sent(ANSWER);
  assert.equal(response.statusCode, 200);
  assert.equal(response.headers['content-type'], 'application/json; charset=utf-8');
  assert.equal(response.headers['electric-handle'], 'h');
  assert.equal(response.headers['cache-control'], 'public, max-age=5');
  assert.equal(response.headers.etag, '"h:-1:0_0"');
  assert.equal(response.body, '[]');
});

test('if-none-match naming the etag: 304 with the same headers and no body', async () => {
  const response = await sent(ANSWER, { 'if-none-match': '"h:-1:0_0"' });
  assert.equal(response.statusCode, 304);
  assert.equal(response.headers['electric-handle'], 'h');
  assert.equal(response.headers['cache-control'], 'public, max-age=5');
  assert.equal(response.headers.etag, '"h:-1:0_0"');
  assert.equal(response.headers['content-type'], undefined);
  assert.equal(response.body, '');
});

test('another etag, or an answer without one, is sent whole', async () => {
  assert.equal((await sent(ANSWER, { 'if-none-match': '"other"' })).statusCode, 200);
  const refetch: ShapeAnswer = { status: 409, headers: {}, body: '[]' };
  assert.equal((await sent(refetch, { 'if-none-match': '"h:-1:0_0"' })).statusCode, 409);
});

test('a body of chunks is streamed in order', async () => {
  const chunks = [Buffer.from('['), Buffer.from('{"a":1}'), Buffer.from(']')];
  const response = await sent({ status: 200, headers: {}, body: chunks });
  assert.equal(response.body, '[{"a":1}]');
  assert.equal(response.headers['transfer-encoding'], 'chunked');
  assert.equal(response.headers['content-length'], undefined);
});

test('a shared Buffer body goes out with the very headers a text body gets, CORS included', async () => {
  const withCors = async (body: string | Buffer, headers: Record<string, string> = {}) => {
    const app = Fastify();
    await app.register(cors, { origin: '*', exposedHeaders: ['electric-handle'] });
    app.get('/', async (_request, reply) => sendShapeAnswer(reply, { ...ANSWER, body }));
    const response = await app.inject({ method: 'GET', url: '/', headers });
    await app.close();
    return response;
  };
  const text = await withCors('[{"a":1}]');
  const shared = await withCors(Buffer.from('[{"a":1}]'));
  // In order: the same headers, in the same order.
  const withoutDate = (response: typeof text) =>
    Object.entries(response.headers).filter(([name]) => name !== 'date');
  assert.equal(shared.statusCode, 200);
  assert.deepEqual(withoutDate(shared), withoutDate(text));
  assert.equal(shared.body, text.body);
  // A revalidation of a shared answer is a 304 as any other.
  const revalidated = await withCors(Buffer.from('[]'), { 'if-none-match': '"h:-1:0_0"' });
  assert.equal(revalidated.statusCode, 304);
  assert.equal(revalidated.body, '');
});
