import type { FastifyInstance } from 'fastify';
import { redactedUrl } from './log-serializers.js';

/**
 * Unknown paths: Fastify's own 404 body, but with `secret` redacted from the URL it names, and
 * without Fastify's log line, which would write the URL as sent (the request's own log lines
 * already record it, redacted).
 */
export function registerNotFoundHandler(app: FastifyInstance): void {
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({
      message: `Route ${request.method}:${redactedUrl(request.url)} not found`,
      error: 'Not Found',
      statusCode: 404,
    }),
  );
}
