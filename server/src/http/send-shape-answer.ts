import { Readable } from 'node:stream';
import { HEADERS } from '@sluice/protocol';
import type { FastifyReply } from 'fastify';
import type { ShapeAnswer } from './shape-answer.js';

/**
 * Sends a shape answer over HTTP. A request whose `if-none-match` names the answer's etag gets a
 * 304 with the same headers and no body: caches keep the answer they hold, still current.
 */
export function sendShapeAnswer(reply: FastifyReply, answer: ShapeAnswer): FastifyReply {
  void reply.headers(answer.headers);
  const etag = answer.headers[HEADERS.etag];
  if (etag !== undefined && reply.request.headers[HEADERS.ifNoneMatch] === etag) {
    return reply.code(304).send();
  }
  const body = typeof answer.body === 'string' ? answer.body : Readable.from(answer.body);
  return reply.code(answer.status).type('application/json').send(body);
}
