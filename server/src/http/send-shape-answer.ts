import type { OutgoingHttpHeaders } from 'node:http';
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
 * the length. Response hooks, logging and metrics still run when the response ends.
 */
function sendBuffer(reply: FastifyReply, answer: ShapeAnswer, body: Buffer): FastifyReply {
  reply.hijack();
  // A copy of the reply's headers, added to in place (one copy per answer, not three).
  const headers = Object.assign(reply.getHeaders() as OutgoingHttpHeaders, answer.headers);
  headers['content-type'] = JSON_TYPE;
  headers['content-length'] = String(body.length);
  reply.raw.writeHead(answer.status, headers);
  reply.raw.end(body);
  return reply;
}
