import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeProblem } from './describe-problem.js';

const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });

test('Postgres errors keep their SQLSTATE and gain a meaning', () => {
  const cases: [string, string, RegExp][] = [
    [
      '57P01',
      'terminating connection due to administrator command',
      /walsender or session was terminated/,
    ],
    ['57P03', 'the database system is starting up', /starting up or shutting down/],
    ['55006', 'replication slot "s" is active for PID 42', /in use by another process/],
    ['42704', 'replication slot "s" does not exist', /does not exist/],
    ['55000', 'logical decoding requires wal_level >= logical', /wal_level/],
    ['42501', 'permission denied to start WAL sender', /REPLICATION privilege/],
  ];
  for (const [code, text, meaning] of cases) {
    const problem = describeProblem(pgError(code, text));
    assert.equal(problem.code, code);
    assert.match(problem.message, meaning);
    assert.ok(problem.message.endsWith(text), 'the original text is kept');
  }
});

test('socket errors keep their errno; message-only failures get a Sluice code', () => {
  assert.equal(
    describeProblem(pgError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1')).code,
    'ECONNREFUSED',
  );
  assert.equal(describeProblem(pgError('ECONNRESET', 'read ECONNRESET')).code, 'ECONNRESET');
  assert.equal(
    describeProblem(new Error('Connection terminated unexpectedly')).code,
    'CONNECTION_LOST',
  );
  assert.equal(describeProblem(new Error('timeout expired')).code, 'CONNECT_TIMEOUT');
  assert.equal(describeProblem(new Error('something odd')).code, 'UNKNOWN');
  assert.equal(describeProblem(undefined).code, 'UNKNOWN');
  assert.equal(describeProblem('a string').message, 'a string');
});
