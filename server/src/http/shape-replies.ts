import { HEADERS } from '@sluice/protocol';
import type { FastifyReply } from 'fastify';
import { setCacheControl, type CacheAges } from './cache-policy.js';

/** 409 must-refetch naming the handle to start again from (PROTOCOL.md §3). */
export function mustRefetch(
  reply: FastifyReply,
  handle: string,
  ages: CacheAges,
  fallback = false,
): FastifyReply {
  if (fallback) reply.header(HEADERS.fallbackMode, 'true');
  setCacheControl(reply, fallback ? 'fallback' : 'must-refetch', ages);
  return reply
    .code(409)
    .header(HEADERS.handle, handle)
    .type('application/json')
    .send('[{"headers":{"control":"must-refetch"}}]');
}

/** 503 with `retry-after`: the client backs off and comes back (PROTOCOL.md §5). */
export function unavailable(
  reply: FastifyReply,
  ages: CacheAges,
  code: string,
  message: string,
): FastifyReply {
  setCacheControl(reply, 'error', ages);
  return reply.code(503).header(HEADERS.retryAfter, '1').send({ code, message });
}

/** 400 naming every parameter at fault. */
export function badRequest(
  reply: FastifyReply,
  errors: Record<string, string[]>,
  ages: CacheAges,
): FastifyReply {
  setCacheControl(reply, 'error', ages);
  return reply.code(400).send({ message: 'Invalid request', errors });
}
