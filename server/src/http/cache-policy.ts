import type { FastifyReply } from 'fastify';

/** Ages of the cache-control matrix (PROTOCOL.md §5) that operators may tune. */
export interface CacheAges {
  maxAgeS: number;
  staleAgeS: number;
  /** Of every response in fallback mode (PROTOCOL.md §7). */
  fallbackMaxAgeS: number;
}

export type CacheKind = 'initial' | 'catch-up' | 'live' | 'must-refetch' | 'fallback' | 'error';

/**
 * Cache-Control per kind of response. The first chunk of a shape is immutable under its handle,
 * hence the week-long policy; live answers change every long-poll window; fallback answers are
 * kept briefly, so clients come back soon for fresher ones; errors are never stored.
 */
export function setCacheControl(reply: FastifyReply, kind: CacheKind, ages: CacheAges): void {
  switch (kind) {
    case 'initial':
      reply.header(
        'cache-control',
        'public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746',
      );
      return;
    case 'catch-up':
      reply.header(
        'cache-control',
        `public, max-age=${ages.maxAgeS}, stale-while-revalidate=${ages.staleAgeS}`,
      );
      return;
    case 'live':
      reply.header('cache-control', 'public, max-age=5, stale-while-revalidate=5');
      return;
    case 'fallback':
      reply.header('cache-control', `public, max-age=${ages.fallbackMaxAgeS}`);
      return;
    case 'must-refetch':
      reply.header('cache-control', 'public, max-age=60, must-revalidate');
      return;
    case 'error':
      reply.header('cache-control', 'no-store');
      reply.header('surrogate-control', 'no-store');
      return;
  }
}
