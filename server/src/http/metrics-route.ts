import { HEADERS, PATHS } from '@sluice/protocol';
import type { FastifyInstance } from 'fastify';
import type { SluiceMetrics } from '../status/sluice-metrics.js';

/** `GET /metrics`: Prometheus text for scrapers; never cached. */
export function registerMetricsRoute(app: FastifyInstance, metrics: SluiceMetrics): void {
  app.get(PATHS.metrics, async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply
      .header(HEADERS.cacheControl, 'no-store')
      .type(metrics.registry.contentType)
      .send(text);
  });
}
