import { createHash } from 'node:crypto';
import caching from '@fastify/caching';
import { HEADERS, PATHS } from '@sluice/protocol';
import type { FastifyInstance } from 'fastify';
import type { StatusMonitor } from '../status/status-monitor.js';

/**
 * `GET /v1/status` (docs/protocol.md §7), answered from memory. `@fastify/caching` sets its
 * cache-control and etag and answers `If-None-Match` with 304. Its etag store is replaced by the
 * current etag alone: an etag is "fresh" only while it names the current document, never because
 * it was handed out earlier.
 */
export async function registerStatusRoute(
  app: FastifyInstance,
  status: StatusMonitor,
  maxAgeS: number,
): Promise<void> {
  let current = { body: '', etag: '' };
  const render = () => {
    const body = JSON.stringify(status.document());
    if (body !== current.body) {
      const digest = createHash('sha1').update(body).digest('base64url').slice(0, 16);
      current = { body, etag: `"${digest}"` };
    }
    return current;
  };
  const etagStore = {
    get(key: { id: string }, done: (error: null, item: { item: true } | null) => void) {
      done(null, key.id === render().etag ? { item: true } : null);
    },
    set(_key: unknown, _value: unknown, _ttl: unknown, done: (error: null) => void) {
      done(null);
    },
  };
  // In its own scope, so the plugin's hooks touch only this route.
  await app.register(async (scope) => {
    // The plugin answers a matching If-None-Match with a bare 304 and then marks every non-2xx
    // `no-store`; a 304 must carry the same cache-control and etag as the 200 it revalidates, or
    // caches stop caching. Added before the plugin, this hook runs before the plugin's.
    scope.addHook('onSend', async (_request, reply, payload) => {
      if (reply.statusCode === 304) {
        reply
          .header(HEADERS.cacheControl, `public, max-age=${maxAgeS}`)
          .header(HEADERS.etag, render().etag);
      }
      return payload;
    });
    await scope.register(caching, {
      privacy: caching.privacy.PUBLIC,
      expiresIn: maxAgeS,
      cache: etagStore as never,
    });
    scope.get(PATHS.status, async (_request, reply) => {
      const { body, etag } = render();
      return reply
        .etag(etag, maxAgeS * 1000)
        .type('application/json')
        .send(body);
    });
  });
}
