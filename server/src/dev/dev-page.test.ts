import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { devPage } from './dev-page.js';

let dir: string;
let app: FastifyInstance;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-dev-page-'));
  await mkdir(join(dir, 'client/dist/nested'), { recursive: true });
  await mkdir(join(dir, 'protocol/dist'), { recursive: true });
  await writeFile(join(dir, 'client/dist/nested/part.js'), 'export const part = 1;\n');
  await writeFile(join(dir, 'client/dist/index.js.map'), '{"version":3}');
  await writeFile(join(dir, 'client/dist/index.d.ts'), 'export {};\n');
  await writeFile(join(dir, 'protocol/dist/index.js'), 'export const wire = 1;\n');
  await writeFile(join(dir, 'secret.js'), 'export const secret = 1;\n');
  await symlink(join(dir, 'secret.js'), join(dir, 'client/dist/escape.js'));
  app = Fastify();
  await app.register(devPage, {
    clientDist: join(dir, 'client/dist'),
    protocolDist: join(dir, 'protocol/dist'),
  });
});
after(async () => {
  await app.close();
  await rm(dir, { recursive: true, force: true });
});

test('the page says how to build the client until client/dist/index.js exists', async () => {
  const unbuilt = await app.inject('/');
  assert.equal(unbuilt.statusCode, 503);
  assert.match(unbuilt.body, /npx tsc -b/);

  await writeFile(join(dir, 'client/dist/index.js'), 'export const client = 1;\n');
  const page = await app.inject('/?table=items');
  assert.equal(page.statusCode, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assert.match(page.body, /"@sluice\/client": "\/dev\/client\/index\.js"/);
  assert.match(page.body, /"@sluice\/protocol": "\/dev\/protocol\/index\.js"/);
  assert.match(page.body, /id="mode" data-mode="connecting"/);
});

test('serves .js and .js.map files of the two dist folders', async () => {
  const script = await app.inject('/dev/client/nested/part.js');
  assert.equal(script.statusCode, 200);
  assert.match(String(script.headers['content-type']), /^text\/javascript/);
  assert.equal(script.body, 'export const part = 1;\n');
  const map = await app.inject('/dev/client/index.js.map');
  assert.equal(map.statusCode, 200);
  assert.match(String(map.headers['content-type']), /^application\/json/);
  const protocol = await app.inject('/dev/protocol/index.js');
  assert.equal(protocol.body, 'export const wire = 1;\n');
});

test('nothing else: other file types, missing files, paths out of the folders', async () => {
  for (const url of [
    '/dev/client/index.d.ts',
    '/dev/client/missing.js',
    '/dev/client/../../secret.js',
    '/dev/client/%2e%2e/%2e%2e/secret.js',
    '/dev/client/..%2f..%2fsecret.js',
    '/dev/client/nested/..%2F..%2F..%2Fsecret.js',
    '/dev/client/.hidden.js',
    '/dev/client/escape.js',
    '/dev/protocol/../client/dist/index.js',
  ]) {
    const response = await app.inject(url);
    assert.equal(response.statusCode, 404, `${url} → ${response.statusCode}: ${response.body}`);
  }
});
