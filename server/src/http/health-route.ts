import { HEADERS, PATHS, type HealthStatus } from '@sluice/protocol';
import type { FastifyInstance } from 'fastify';
import type { StatusMonitor } from '../status/status-monitor.js';

/**
 * `GET /v1/health`, Electric-compatible: 200 `active` once the server serves shapes, 202
 * `starting` before. Answered from memory: orchestrators poll it often.
 */
export function registerHealthRoute(app: FastifyInstance, status: StatusMonitor): void {
  app.get(PATHS.health, async (_request, reply) => {
    const { state } = status.current();
    const health: HealthStatus = state === 'live' || state === 'fallback' ? 'active' : 'starting';
    return reply
      .code(health === 'active' ? 200 : 202)
      .header(HEADERS.cacheControl, 'no-cache, no-store, must-revalidate')
      .send({ status: health });
  });
}
