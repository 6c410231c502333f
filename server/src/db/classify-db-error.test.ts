import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import pg from 'pg';
import { classifyDbError, DB_ERROR_POLICIES, type DbErrorClass } from './classify-db-error.js';
import { QueryTimeoutError, ReplicaBehindError } from './database-errors.js';

/** An error as node-postgres reports a server's ErrorResponse. */
function serverError(code: string, message = 'from Postgres'): Error {
  const error = new pg.DatabaseError(message, 0, 'error');
  error.code = code;
  return error;
}

/** An error as Node's net module reports a socket failure. */
function socketError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), { code });
}

const cases: [DbErrorClass, Error][] = [
  ['connect', socketError('ECONNREFUSED')],
  ['connect', socketError('ENOTFOUND')],
  ['connect', socketError('EAI_AGAIN')],
  ['connect', socketError('EHOSTUNREACH')],
  ['connect', serverError('57P03', 'the database system is starting up')],
  ['connect', new Error('Connection terminated due to connection timeout')],
  ['connect', new Error('timeout expired')],
  ['connection_lost', socketError('ECONNRESET')],
  ['connection_lost', socketError('EPIPE')],
  ['connection_lost', socketError('ETIMEDOUT')],
  ['connection_lost', new Error('Connection terminated unexpectedly')],
  ['connection_lost', new Error('Client has encountered a connection error and is not queryable')],
  ['connection_lost', serverError('57P01', 'terminating connection due to administrator command')],
  [
    'connection_lost',
    serverError('57P02', 'terminating connection because of crash of another server process'),
  ],
  ['connection_lost', serverError('08006', 'connection failure')],
  ['connection_lost', new QueryTimeoutError(1000)],
  ['rolled_back', serverError('40001', 'could not serialize access due to concurrent update')],
  ['rolled_back', serverError('40P01', 'deadlock detected')],
  ['replica_only', serverError('25006', 'cannot execute INSERT in a read-only transaction')],
  ['replica_only', serverError('40001', 'canceling statement due to conflict with recovery')],
  ['replica_only', serverError('57P04', 'terminating connection due to conflict with recovery')],
  ['replica_only', serverError('55000', 'recovery is in progress')],
  ['timeout', serverError('57014', 'canceling statement due to statement timeout')],
  ['timeout', serverError('55P03', 'canceling statement due to lock timeout')],
  ['timeout', serverError('25P03', 'terminating connection due to idle-in-transaction timeout')],
  ['timeout', new Error('timeout exceeded when trying to connect')],
  ['resource', serverError('53300', 'sorry, too many clients already')],
  ['resource', serverError('53200', 'out of memory')],
  ['resource', serverError('53100', 'could not extend file: No space left on device')],
  ['permanent', serverError('42601', 'syntax error at or near "x"')],
  ['permanent', serverError('42501', 'permission denied for table items')],
  ['permanent', serverError('42P01', 'relation "nope" does not exist')],
  ['permanent', serverError('28P01', 'password authentication failed for user "x"')],
  ['permanent', serverError('3D000', 'database "nope" does not exist')],
  ['permanent', serverError('22012', 'division by zero')],
  ['permanent', serverError('55000', 'logical decoding requires wal_level >= logical')],
  ['permanent', serverError('55006', 'replication slot "s" is active')],
  ['permanent', new ReplicaBehindError('0/1', '0/2')],
  ['permanent', new TypeError('x is not a function')],
  ['permanent', socketError('ENOSPC')],
];

test('every kind of failure falls in its class', () => {
  for (const [expected, error] of cases) {
    assert.equal(
      classifyDbError(error),
      expected,
      `${error.message} (${(error as { code?: string }).code})`,
    );
  }
});

test('odd values classify as permanent instead of throwing', () => {
  for (const value of [undefined, null, 'text', 42, {}])
    assert.equal(classifyDbError(value), 'permanent');
});

test('only permanent errors are never retried; only database trouble counts for the breaker', () => {
  const retried = Object.entries(DB_ERROR_POLICIES)
    .filter(([, policy]) => policy.retry)
    .map(([name]) => name);
  assert.deepEqual(retried.sort(), [
    'connect',
    'connection_lost',
    'replica_only',
    'resource',
    'rolled_back',
    'timeout',
  ]);
  const breaker = Object.entries(DB_ERROR_POLICIES)
    .filter(([, policy]) => policy.breaker)
    .map(([name]) => name);
  // A bad query, a deadlock or a busy replica says nothing about whether the database is alive.
  assert.deepEqual(breaker.sort(), ['connect', 'connection_lost', 'resource']);
});

test('docs/errors.md lists every class with its policy', () => {
  const docs = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
  const rows = new Map(
    [...docs.matchAll(/^\|\s*`([a-z_]+)`\s*\|\s*(yes|no)\s*\|\s*(yes|no)\s*\|/gm)].map((m) => [
      m[1],
      { retry: m[2] === 'yes', breaker: m[3] === 'yes' },
    ]),
  );
  for (const [name, policy] of Object.entries(DB_ERROR_POLICIES)) {
    assert.deepEqual(rows.get(name), { retry: policy.retry, breaker: policy.breaker }, name);
  }
  assert.equal(rows.size, Object.keys(DB_ERROR_POLICIES).length);
});
