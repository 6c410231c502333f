import type { FastifyError, FastifyInstance } from 'fastify';
import type { SluiceError } from '../errors/sluice-error.js';
import { errorAnswer } from './error-answer.js';

/** Every error a route throws becomes the response `errorAnswer` makes of it. */
export function registerErrorHandler(app: FastifyInstance, onUnreachable: () => void): void {
  app.setErrorHandler((error: FastifyError | SluiceError, request, reply) => {
    const { status, headers, body } = errorAnswer(error, request.log, onUnreachable);
    return reply.code(status).headers(headers).send(body);
  });
}
