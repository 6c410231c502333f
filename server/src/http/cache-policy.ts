import { HEADERS } from '@sluice/protocol';

/** Ages of the cache-control matrix (docs/protocol.md §5) that operators may tune. */
export interface CacheAges {
  maxAgeS: number;
  staleAgeS: number;
  /** Of every response in fallback mode (docs/protocol.md §7). */
  fallbackMaxAgeS: number;
}

export type CacheKind = 'initial' | 'catch-up' | 'live' | 'must-refetch' | 'fallback';

/**
 * Cache-Control per kind of shape answer. The first chunk of a shape is immutable under its
 * handle, hence the week-long policy; live answers change every long-poll window; fallback
 * answers are kept briefly, so clients come back soon for fresher ones.
 */
export function cacheControl(kind: CacheKind, ages: CacheAges): string {
  switch (kind) {
    case 'initial':
      return 'public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746';
    case 'catch-up':
      return `public, max-age=${ages.maxAgeS}, stale-while-revalidate=${ages.staleAgeS}`;
    case 'live':
      return 'public, max-age=5, stale-while-revalidate=5';
    case 'fallback':
      return `public, max-age=${ages.fallbackMaxAgeS}`;
    case 'must-refetch':
      return 'public, max-age=60, must-revalidate';
  }
}

/** Errors and other one-off answers are never stored, by browsers nor by CDNs. */
export const NO_STORE_HEADERS: Readonly<Record<string, string>> = {
  [HEADERS.cacheControl]: 'no-store',
  'surrogate-control': 'no-store',
};
