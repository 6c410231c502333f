import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
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
  const notModified = isNotModified(answer.headers, reply.request.headers);
  if (Buffer.isBuffer(answer.body) && !notModified) return sendBuffer(reply, answer, answer.body);
  void reply.headers(answer.headers);
  if (notModified) return reply.code(304).send();
  const body = typeof answer.body === 'string' ? answer.body : Readable.from(answer.body);
  return reply.code(answer.status).type('application/json').send(body);
}

/**
 * Whether a request's `if-none-match` names the etag of the answer it is owed: then it gets a 304
 * with the answer's headers and no body.
 */
export function isNotModified(
  answerHeaders: Readonly<Record<string, string>>,
  requestHeaders: IncomingHttpHeaders,
): boolean {
  const etag = answerHeaders[HEADERS.etag];
  return etag !== undefined && requestHeaders[HEADERS.ifNoneMatch] === etag;
}

/**
 * A shared body goes out with one `writeHead` and one `end` on the raw response, as Fastify's
 * `send` would write it, without its reply pipeline (onSend hooks, payload checks and copies): a
 * flush answers every held long-poll of a shape at once, and none of them needs that work. The
 * headers are those `send` would write: the reply's own (CORS), then the answer's. Nothing after
 * the answer reads the response's headers (the hooks that log and count requests look at its
 * status only).
 */
function sendBuffer(reply: FastifyReply, answer: ShapeAnswer, body: Buffer): FastifyReply {
  reply.hijack();
  const base: string[] = [];
  for (const [name, value] of Object.entries(reply.getHeaders())) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) base.push(name, item);
    else base.push(name, String(value));
  }
  writeAnswer(reply.raw, answer.status, base, answer.headers, body);
  return reply;
}

/**
 * Writes a whole response on the raw `res`: the `base` headers (name, value, …), then `headers`,
 * then a JSON body's type and length. They are handed to `writeHead` as one flat list: set one by
 * one, each would be validated and stored only to be read back, which cost a fan-out to 1,000
 * long-polls several milliseconds. No body: none is written (a 304).
 */
export function writeAnswer(
  res: ServerResponse,
  status: number,
  base: readonly string[],
  headers: Readonly<Record<string, string>>,
  body: Buffer | string | undefined,
): void {
  const list = [...base];
  for (const name in headers) list.push(name, headers[name]!);
  if (body !== undefined) {
    list.push('content-type', JSON_TYPE, 'content-length', String(Buffer.byteLength(body)));
  }
  res.writeHead(status, list);
  res.end(body);
}
