import { problemCode } from '../pg/describe-problem.js';

/**
 * What a failed query means for what to do next. One table (documented in docs/errors.md, kept
 * in step by a test): whether a fresh attempt can succeed, whether the failure says the database
 * itself is in trouble (it counts towards that database's circuit breaker), and whether the
 * primary can do what a replica could not.
 */
export type DbErrorClass =
  | 'connect'
  | 'connection_lost'
  | 'rolled_back'
  | 'replica_only'
  | 'timeout'
  | 'resource'
  | 'permanent';

export interface DbErrorPolicy {
  /** A fresh attempt (new connection, whole transaction again) may succeed. */
  retry: boolean;
  /** Counts as a failure of the database for its circuit breaker. */
  breaker: boolean;
  /** Examples, for the docs. */
  examples: string;
}

export const DB_ERROR_POLICIES: Readonly<Record<DbErrorClass, DbErrorPolicy>> = Object.freeze({
  connect: {
    retry: true,
    breaker: true,
    examples:
      'ECONNREFUSED, ENOTFOUND, EHOSTUNREACH, connect timeout, 57P03 (starting up or shutting down)',
  },
  connection_lost: {
    retry: true,
    breaker: true,
    examples:
      'ECONNRESET, EPIPE, connection terminated, 57P01/57P02 (terminated, crash), 08xxx, no answer within the query timeout (partition)',
  },
  rolled_back: {
    retry: true,
    breaker: false,
    examples: '40001 serialization failure, 40P01 deadlock',
  },
  replica_only: {
    retry: true,
    breaker: false,
    examples:
      '25006 read-only transaction, recovery conflicts (40001 or 57P04 "conflict with recovery"), 55000 "recovery is in progress" (pg_current_wal_lsn() on a standby)',
  },
  timeout: {
    retry: true,
    breaker: false,
    examples:
      '57014 statement timeout or cancel, 55P03 lock timeout, 25P03 idle-session timeout, no free pooled connection within the connect timeout',
  },
  resource: {
    retry: true,
    breaker: true,
    examples: '53xxx: too many connections, out of memory, disk full',
  },
  permanent: {
    retry: false,
    breaker: false,
    examples:
      'syntax (42601), permissions (42501), missing objects (42P01, 42703), authentication (28xxx), missing database (3D000), bad data (22xxx), and anything unrecognised',
  },
});

/** Codes as `problemCode` gives them: SQLSTATEs, errnos and Sluice's own. */
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  '57P03',
  'CONNECT_TIMEOUT',
]);
const LOST_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  '57P01',
  '57P02',
  'CONNECTION_LOST',
  'SLUICE_DB_QUERY_TIMEOUT',
]);
/** Statement, lock and idle-session timeouts, and a pool with no free connection in time. */
const TIMEOUT_CODES = new Set(['57014', '55P03', '25P03', 'POOL_TIMEOUT']);

/** Sorts an error thrown by node-postgres (or by Sluice's own deadlines) into its class. */
export function classifyDbError(error: unknown): DbErrorClass {
  const code = problemCode(error);
  const message = (error as { message?: unknown } | null)?.message;
  const text = typeof message === 'string' ? message : '';

  if (/conflict with recovery/i.test(text)) return 'replica_only';
  if (code === '25006') return 'replica_only';
  if (code === '55000' && /recovery is in progress/i.test(text)) return 'replica_only';

  if (CONNECT_CODES.has(code)) return 'connect';
  if (LOST_CODES.has(code) || code.startsWith('08')) return 'connection_lost';
  if (code === '40001' || code === '40P01') return 'rolled_back';
  if (TIMEOUT_CODES.has(code)) return 'timeout';
  if (code.startsWith('53')) return 'resource';
  return 'permanent';
}
