import { ERROR_CODES, HEADERS, type ErrorCode } from '@sluice/protocol';
import type { FastifyError, FastifyInstance } from 'fastify';
import { describeProblem, isConnectionProblem } from '../status/describe-problem.js';

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
      return reply.code(503).header(HEADERS.retryAfter, '1').send({ code, message: error.message });
    }
    if (isConnectionProblem(describeProblem(error))) {
      request.log.warn({ err: error }, 'database unreachable');
      onUnreachable();
      return reply
        .code(503)
        .header(HEADERS.retryAfter, '5')
        .send({
          code: 'SLUICE_ERR_DB_UNREACHABLE',
          message: `The database could not be reached: ${error.message}`,
        });
    }
    request.log.error({ err: error }, 'request failed');
    return reply.code(500).send({ code: 'SLUICE_ERR_INTERNAL', message: 'Internal server error' });
  });
}
