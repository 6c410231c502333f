import { ERROR_CODES, WS_FRAME_TYPES, type WsErrorFrame } from '@sluice/protocol';
import type { FastifyBaseLogger } from 'fastify';
import { classifyDbError, DB_ERROR_POLICIES } from '../db/classify-db-error.js';
import { SluiceError } from '../errors/sluice-error.js';

/** What a 503 without its own wait tells the client to wait, in seconds (as over HTTP). */
const DEFAULT_RETRY_AFTER_S = 1;
/** A database that failed past the executor's retries is probed before clients come back. */
const DB_RETRY_AFTER_S = 5;

/**
 * An error as an `error` frame, with the status and code its `GET /v1/shape` would get from the
 * HTTP error handler (docs/errors.md): a 400 lists the fields at fault under `errors`, a 503
 * says when to retry, database trouble past its retries is a 503 (and `onUnreachable` has the
 * database probed), anything else a 500 logged with its cause and never shown to the client.
 */
export function errorFrame(
  error: unknown,
  id: string | undefined,
  log: FastifyBaseLogger,
  onUnreachable: () => void,
): WsErrorFrame {
  const frame = (fields: Omit<WsErrorFrame, 'type' | 'id'>): WsErrorFrame =>
    id === undefined
      ? { type: WS_FRAME_TYPES.error, ...fields }
      : { type: WS_FRAME_TYPES.error, id, ...fields };
  if (error instanceof SluiceError) {
    const { status } = ERROR_CODES[error.code];
    if (status === 400) {
      const { field, fields } = error.details;
      const errors = fields ?? { [field ?? 'request']: [error.message] };
      return frame({ status, code: error.code, message: error.message, errors });
    }
    if (status === 503) {
      const retryAfter = error.details.retryAfterS ?? DEFAULT_RETRY_AFTER_S;
      return frame({ status, code: error.code, message: error.message, retry_after: retryAfter });
    }
  } else {
    const policy = DB_ERROR_POLICIES[classifyDbError(error)];
    if (policy.retry) {
      log.warn({ err: error }, 'database query failed (WebSocket subscription)');
      if (policy.breaker) onUnreachable();
      return frame({
        status: 503,
        code: 'SLUICE_ERR_DB_UNREACHABLE',
        message: 'The database could not answer; retry shortly',
        retry_after: DB_RETRY_AFTER_S,
      });
    }
  }
  log.error({ err: error }, 'WebSocket subscription failed');
  return frame({ status: 500, code: 'SLUICE_ERR_INTERNAL', message: 'Internal server error' });
}
