import { ERROR_CODES, HEADERS, type ErrorCode } from '@sluice/protocol';
import type { FastifyError, FastifyInstance } from 'fastify';
import { classifyDbError, DB_ERROR_POLICIES } from '../db/classify-db-error.js';

/**
 * Unexpected errors never crash the process or leak a stack to clients: database trouble is a
 * 503 the client retries (and `onUnreachable` has the database probed at once), anything else a
 * 500 logged with its cause. Neither is cached.
 */
export function registerErrorHandler(app: FastifyInstance, onUnreachable: () => void): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    void reply.header('cache-control', 'no-store').header('surrogate-control', 'no-store');
    if (error.validation || (error.statusCode !== undefined && error.statusCode < 500)) {
      return reply.code(error.statusCode ?? 400).send({ message: error.message });
    }
    // A Sluice error whose code is a 503 in the table: transient, the client retries.
    const code = (error as { code?: string }).code;
    if (
      code !== undefined &&
      code in ERROR_CODES &&
      ERROR_CODES[code as ErrorCode].status === 503
    ) {
      request.log.warn({ code }, error.message);
      const retryAfterS = (error as { retryAfterS?: number }).retryAfterS ?? 1;
      return reply
        .code(503)
        .header(HEADERS.retryAfter, String(retryAfterS))
        .send({ code, message: error.message });
    }
    // Database failures that outlasted the executor's retries: transient too (docs/errors.md).
    const policy = DB_ERROR_POLICIES[classifyDbError(error)];
    if (policy.retry) {
      request.log.warn({ err: error }, 'database query failed');
      // Connection trouble: have the database probed at once (the state may change).
      if (policy.breaker) onUnreachable();
      return reply
        .code(503)
        .header(HEADERS.retryAfter, '5')
        .send({
          code: 'SLUICE_ERR_DB_UNREACHABLE',
          message: `The database could not answer: ${error.message}`,
        });
    }
    request.log.error({ err: error }, 'request failed');
    return reply.code(500).send({ code: 'SLUICE_ERR_INTERNAL', message: 'Internal server error' });
  });
}
