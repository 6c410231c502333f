import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { SluiceError, requestInvalid } from '../errors/sluice-error.js';
import { errorFrame } from './error-frame.js';

const log = pino({ level: 'silent' });
const never = () => assert.fail('no database probe for this error');

test('a 400 lists the fields at fault, as the HTTP 400 body does', () => {
  const frame = errorFrame(requestInvalid({ offset: ['out of bounds'] }), 'a', log, never);
  assert.deepEqual(frame, {
    type: 'error',
    id: 'a',
    status: 400,
    code: 'SLUICE_ERR_SHAPE_INVALID',
    message: 'offset: out of bounds',
    errors: { offset: ['out of bounds'] },
  });
});

test('a 503 says when to retry; without an id, none is named', () => {
  const error = new SluiceError('SLUICE_ERR_SHAPE_LIMIT', 'too many', { retryAfterS: 7 });
  const frame = errorFrame(error, undefined, log, never);
  assert.equal('id' in frame, false);
  assert.equal(frame.status, 503);
  assert.equal(frame.retry_after, 7);
});

test('an unexpected error is a 500 that shows nothing of it', () => {
  const frame = errorFrame(new Error('secret internals'), 'a', log, never);
  assert.equal(frame.status, 500);
  assert.equal(frame.code, 'SLUICE_ERR_INTERNAL');
  assert.doesNotMatch(frame.message, /internals/);
});

test('a database that cannot be reached is a 503 and has it probed', () => {
  let probed = false;
  const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  const frame = errorFrame(refused, 'a', log, () => (probed = true));
  assert.equal(frame.code, 'SLUICE_ERR_DB_UNREACHABLE');
  assert.equal(frame.retry_after, 5);
  assert.ok(probed);
});
