import { Readable } from 'node:stream';
import { HEADERS } from '@sluice/protocol';
import type { FastifyReply } from 'fastify';
import type { ShapeAnswer } from './shape-answer.js';

/** What Fastify's `reply.type('application/json')` sends. */
const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * Sends a shape answer over HTTP. A request whose `if-none-match` names the answer's etag gets a
 * 304 with the same headers and no body: caches keep the answer they hold, still current.
 */
export function sendShapeAnswer(reply: FastifyReply, answer: ShapeAnswer): FastifyReply {
  const etag = answer.headers[HEADERS.etag];
  const notModified = etag !== undefined && reply.request.headers[HEADERS.ifNoneMatch] === etag;
  if (Buffer.isBuffer(answer.body) && !notModified) return sendBuffer(reply, answer, answer.body);
  void reply.headers(answer.headers);
  if (notModified) return reply.code(304).send();
  const body = typeof answer.body === 'string' ? answer.body : Readable.from(answer.body);
  return reply.code(answer.status).type('application/json').send(body);
}

/**
 * A shared body goes out with one `writeHead` and one `end` on the raw response, as Fastify's
 * `send` would write it, without its reply pipeline (onSend hooks, payload checks and copies): a
 * flush answers every held long-poll of a shape at once, and none of them needs that work. The
 * headers are those `send` would write: the reply's own (CORS), then the answer's, the type and
 * the length. They are set on the raw response rather than passed to `writeHead`, so that the
 * response hooks, logging and metrics, which still run when the response ends, see them as they
 * see any reply's.
 */
function sendBuffer(reply: FastifyReply, answer: ShapeAnswer, body: Buffer): FastifyReply {
  reply.hijack();
  const raw = reply.raw;
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value !== undefined) raw.setHeader(name, value);
  }
  for (const [name, value] of Object.entries(answer.headers)) raw.setHeader(name, value);
  raw.setHeader('content-type', JSON_TYPE);
  raw.setHeader('content-length', String(body.length));
  raw.writeHead(answer.status);
  raw.end(body);
  return reply;
}
