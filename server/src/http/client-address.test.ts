import assert from 'node:assert/strict';
import { test } from 'node:test';
import Fastify from 'fastify';
import { clientAddress } from './client-address.js';

async function addressOf(header: string | undefined, headers: Record<string, string>) {
  const app = Fastify();
  app.get('/', (request) => clientAddress(request, header));
  const response = await app.inject({
    method: 'GET',
    url: '/',
    headers,
    remoteAddress: '10.0.0.1',
  });
  await app.close();
  return response.body;
}

test("the connection's address, unless a trusted proxy's header is named", async () => {
  assert.equal(await addressOf(undefined, { 'x-forwarded-for': '203.0.113.7' }), '10.0.0.1');
  assert.equal(await addressOf('x-real-ip', { 'x-real-ip': '203.0.113.7' }), '203.0.113.7');
});

test("a list is read from its last entry, the one the proxy added; no header: the connection's", async () => {
  const header = 'x-forwarded-for';
  assert.equal(await addressOf(header, { [header]: 'spoofed, 203.0.113.7' }), '203.0.113.7');
  assert.equal(await addressOf(header, { [header]: ' 203.0.113.7 ' }), '203.0.113.7');
  assert.equal(await addressOf(header, {}), '10.0.0.1');
  assert.equal(await addressOf(header, { [header]: '' }), '10.0.0.1');
});
