import { ERROR_CODES, HEADERS, type ErrorCode } from '@sluice/protocol';
import type { FastifyBaseLogger, FastifyError } from 'fastify';
import { classifyDbError, DB_ERROR_POLICIES } from '../db/classify-db-error.js';
import { SluiceError } from '../errors/sluice-error.js';
import { NO_STORE_HEADERS } from './cache-policy.js';

/** What a 503 without its own wait tells the client to wait, in seconds. */
const DEFAULT_RETRY_AFTER_S = 1;
/** Refusals that only say "too many at once". */
const OVERLOAD_CODES: ReadonlySet<ErrorCode> = new Set([
  'SLUICE_ERR_OVERLOADED',
  'SLUICE_ERR_OVERLOADED_PER_CLIENT',
  'SLUICE_ERR_FALLBACK_OVERLOADED',
  'SLUICE_ERR_SHAPE_LIMIT',
]);
/** A database that failed past the executor's retries is probed before clients come back. */
const DB_RETRY_AFTER_S = 5;

/** An error as a response: never cached, its body a JSON object. */
export interface ErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: object;
}

/**
 * The one place errors become responses, none of them cached. A coded error (`SluiceError`) gets
 * the status the table gives its code (docs/errors.md): a 400 names the request parameters at
 * fault, a 503 says when to retry. Other errors never crash the process or leak a stack to
 * clients: database trouble is a 503 the client retries (and `onUnreachable` has the database
 * probed at once), anything else a 500 logged with its cause.
 */
export function errorAnswer(
  error: Error,
  log: FastifyBaseLogger,
  onUnreachable: () => void,
): ErrorAnswer {
  const headers: Record<string, string> = { ...NO_STORE_HEADERS };
  if (error instanceof SluiceError) {
    const { status } = ERROR_CODES[error.code];
    if (status === 400) {
      const { field, fields } = error.details;
      const errors = fields ?? { [field ?? 'request']: [error.message] };
      return { status: 400, headers, body: { message: 'Invalid request', errors } };
    }
    if (status === 503) {
      // Transient: the client retries. An outage is worth a warning; refusals for overload
      // are not (a storm would flood the log; each request's own log line records it).
      const level = OVERLOAD_CODES.has(error.code) ? 'debug' : 'warn';
      log[level]({ code: error.code }, error.message);
      const retryAfterS = error.details.retryAfterS ?? DEFAULT_RETRY_AFTER_S;
      return unavailable(headers, error.code, error.message, retryAfterS);
    }
  } else {
    // Fastify's own refusals (a body too large, a bad content type, a failed schema).
    const { validation, statusCode } = error as Partial<FastifyError>;
    if (validation || (statusCode !== undefined && statusCode < 500)) {
      return { status: statusCode ?? 400, headers, body: { message: error.message } };
    }
  }
  // Database failures that outlasted the executor's retries: transient too (docs/errors.md).
  const policy = DB_ERROR_POLICIES[classifyDbError(error)];
  if (policy.retry) {
    log.warn({ err: error }, 'database query failed');
    // Connection trouble: have the database probed at once (the state may change).
    if (policy.breaker) onUnreachable();
    // Postgres' own text (names, addresses, internals) stays in the log and /v1/status.
    const message = 'The database could not answer; retry shortly';
    return unavailable(headers, 'SLUICE_ERR_DB_UNREACHABLE', message, DB_RETRY_AFTER_S);
  }
  log.error({ err: error }, 'request failed');
  const body = { code: 'SLUICE_ERR_INTERNAL', message: 'Internal server error' };
  return { status: 500, headers, body };
}

/** 503 with `retry-after`: the client backs off and comes back (docs/protocol.md §5). */
function unavailable(
  headers: Record<string, string>,
  code: ErrorCode,
  message: string,
  retryAfterS: number,
): ErrorAnswer {
  headers[HEADERS.retryAfter] = String(retryAfterS);
  return { status: 503, headers, body: { code, message } };
}
