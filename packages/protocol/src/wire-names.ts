/**
 * Every string that crosses the wire, in one place. The server and the client import these and
 * never spell a header or parameter name themselves (docs/protocol.md §2, §5, §7).
 */
export const HEADERS = {
  handle: 'electric-handle',
  offset: 'electric-offset',
  schema: 'electric-schema',
  cursor: 'electric-cursor',
  upToDate: 'electric-up-to-date',
  fallbackMode: 'electric-fallback-mode',
  retryAfter: 'retry-after',
  etag: 'etag',
  ifNoneMatch: 'if-none-match',
  cacheControl: 'cache-control',
  contentType: 'content-type',
  /** `Bearer <secret>`: the secret without putting it in URLs (docs/protocol.md §1). */
  authorization: 'authorization',
} as const;

export const PARAMS = {
  table: 'table',
  offset: 'offset',
  handle: 'handle',
  live: 'live',
  cursor: 'cursor',
  where: 'where',
  params: 'params',
  columns: 'columns',
  replica: 'replica',
  log: 'log',
  secret: 'secret',
  /** Ignored by the server; makes a URL unique so no cache answers it with an older response. */
  cacheBuster: 'cache-buster',
} as const;

export const PATHS = {
  shape: '/v1/shape',
  health: '/v1/health',
  status: '/v1/status',
  metrics: '/metrics',
} as const;

/** Bodies of `GET /v1/health` (Electric-compatible). */
export type HealthStatus = 'active' | 'starting';

/** The server's overall state as published by `GET /v1/status` (docs/protocol.md §7). */
export type ServerState = 'starting' | 'live' | 'fallback' | 'unavailable';
