import { HEADERS, PATHS } from '@sluice/protocol';
import type { FastifyInstance } from 'fastify';
import type { SluiceMetrics } from '../status/sluice-metrics.js';
import type { SecretCheck } from './secret-check.js';

/**
 * `GET /metrics`: Prometheus text for scrapers; never cached. With `secret`
 * (`SLUICE_METRICS_REQUIRE_SECRET`), only for requests that carry it.
 */
export function registerMetricsRoute(
  app: FastifyInstance,
  metrics: SluiceMetrics,
  secret: SecretCheck | undefined,
): void {
  app.get(PATHS.metrics, async (request, reply) => {
    if (secret && !secret.authorise(request, reply)) return reply;
    const text = await metrics.registry.metrics();
    return reply
      .header(HEADERS.cacheControl, 'no-store')
      .type(metrics.registry.contentType)
      .send(text);
  });
}
