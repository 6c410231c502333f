import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import Fastify from 'fastify';
import { SluiceError, requestInvalid, shapeInvalid } from '../errors/sluice-error.js';
import { registerErrorHandler } from './error-handler.js';

/** An app whose one route throws `error`, with its log lines kept. */
async function throwing(error: Error) {
  const lines: { level: number }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as { level: number });
      done();
    },
  });
  const app = Fastify({ logger: { level: 'info', stream } });
  let probes = 0;
  registerErrorHandler(app, () => probes++);
  app.get('/', () => {
    throw error;
  });
  const response = await app.inject({ method: 'GET', url: '/' });
  await app.close();
  return {
    response,
    probes: () => probes,
    errorLogs: lines.filter((line) => line.level >= 50),
    warnings: lines.filter((line) => line.level === 40),
  };
}

const NO_STORE = { 'cache-control': 'no-store', 'surrogate-control': 'no-store' };

function assertNoStore(headers: Record<string, unknown>) {
  for (const [name, value] of Object.entries(NO_STORE)) assert.equal(headers[name], value, name);
}

test('an invalid shape is a 400 naming the parameter at fault, not logged as an error', async () => {
  const { response, errorLogs } = await throwing(shapeInvalid('where', 'unknown column "x"'));
  assert.equal(response.statusCode, 400);
  assert.equal(
    response.body,
    '{"message":"Invalid request","errors":{"where":["unknown column \\"x\\""]}}',
  );
  assertNoStore(response.headers);
  assert.equal(response.headers['retry-after'], undefined);
  assert.deepEqual(errorLogs, []);
});

test('an invalid request names every parameter at fault', async () => {
  const fields = { table: ['is required'], offset: ['is required', 'must be given once'] };
  const { response } = await throwing(requestInvalid(fields));
  assert.equal(response.statusCode, 400);
  assert.deepEqual(response.json(), { message: 'Invalid request', errors: fields });
});

test('a coded 503 says when to retry: its own wait, else 1 s; never logged as an error', async () => {
  const overloaded = await throwing(new SluiceError('SLUICE_ERR_OVERLOADED', 'Too many'));
  assert.equal(overloaded.response.statusCode, 503);
  assert.equal(overloaded.response.headers['retry-after'], '1');
  assert.equal(overloaded.response.body, '{"code":"SLUICE_ERR_OVERLOADED","message":"Too many"}');
  assertNoStore(overloaded.response.headers);
  assert.deepEqual(overloaded.errorLogs, []);

  const open = new SluiceError('SLUICE_ERR_DB_CIRCUIT_OPEN', 'open', { retryAfterS: 2 });
  const { response, probes } = await throwing(open);
  assert.equal(response.statusCode, 503);
  assert.equal(response.headers['retry-after'], '2');
  assert.equal(probes(), 0);
});

test('a database that cannot be reached is a 503 and has the database probed', async () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:5432'), {
    code: 'ECONNREFUSED',
  });
  const { response, probes, warnings } = await throwing(refused);
  assert.equal(response.statusCode, 503);
  assert.equal(response.headers['retry-after'], '5');
  // Postgres' text is for the log, not for clients.
  assert.deepEqual(response.json(), {
    code: 'SLUICE_ERR_DB_UNREACHABLE',
    message: 'The database could not answer; retry shortly',
  });
  assert.match(JSON.stringify(warnings), /connect ECONNREFUSED 10\.1\.2\.3:5432/);
  assert.equal(probes(), 1);
});

test('anything else is a 500 logged with its cause', async () => {
  const { response, errorLogs } = await throwing(new Error('boom'));
  assert.equal(response.statusCode, 500);
  assert.deepEqual(response.json(), {
    code: 'SLUICE_ERR_INTERNAL',
    message: 'Internal server error',
  });
  assertNoStore(response.headers);
  assert.equal(errorLogs.length, 1);
});
