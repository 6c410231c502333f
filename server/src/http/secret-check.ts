import { createHash, timingSafeEqual } from 'node:crypto';
import { HEADERS, PARAMS } from '@sluice/protocol';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { NO_STORE_HEADERS } from './cache-policy.js';

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/** The body's message of every 401 (docs/protocol.md §1). */
export const UNAUTHORIZED_MESSAGE =
  'Unauthorized: the secret is missing or wrong (send secret=<value> or Authorization: Bearer <value>)';

/** Digests have one length whatever the text, so comparing them says nothing about its length. */
function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/**
 * `SLUICE_SECRET`, given as `secret=<value>` or `Authorization: Bearer <value>`. Compared in
 * constant time (over digests), so response timing does not reveal how much of a guess was right.
 */
export class SecretCheck {
  readonly #digest: Buffer;

  constructor(secret: string) {
    this.#digest = digest(secret);
  }

  /** True when the request carries the secret; otherwise answers 401 and returns false. */
  authorise(request: FastifyRequest, reply: FastifyReply): boolean {
    if (this.#carried(request)) return true;
    void reply.headers(NO_STORE_HEADERS).code(401).send({ message: UNAUTHORIZED_MESSAGE });
    return false;
  }

  #carried(request: FastifyRequest): boolean {
    const query = request.query as Record<string, unknown> | undefined;
    return this.carries(query?.[PARAMS.secret], request.headers[HEADERS.authorization]);
  }

  /**
   * Whether the `secret` parameter's value or the `Authorization` header carries the secret (for
   * requests Fastify does not route, such as WebSocket upgrades).
   */
  carries(fromQuery: unknown, authorization: string | undefined): boolean {
    const fromHeader = BEARER.exec(authorization ?? '')?.[1];
    let matched = false;
    for (const candidate of [fromQuery, fromHeader]) {
      if (typeof candidate !== 'string') continue;
      // No early exit: both are compared whenever both are given.
      matched = timingSafeEqual(digest(candidate), this.#digest) || matched;
    }
    return matched;
  }
}
