import { HEADERS } from '@sluice/protocol';
import type { FastifyError, FastifyInstance } from 'fastify';

/** Errors of the network and of a database that is starting, stopping or unreachable. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  '57P01',
  '57P02',
  '57P03',
  '53300',
]);

function isUnreachable(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  if (code !== undefined && UNREACHABLE.has(code)) return true;
  return /Connection terminated|connection timeout|timeout expired/i.test(
    (error as Error).message ?? '',
  );
}

/**
 * Unexpected errors never crash the process or leak a stack to clients: database trouble is a
 * 503 the client retries, anything else a 500 logged with its cause. Neither is cached.
 */
export function registerErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    void reply.header('cache-control', 'no-store').header('surrogate-control', 'no-store');
    if (error.validation || (error.statusCode !== undefined && error.statusCode < 500)) {
      return reply.code(error.statusCode ?? 400).send({ message: error.message });
    }
    if (isUnreachable(error)) {
      request.log.warn({ err: error }, 'database unreachable');
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
