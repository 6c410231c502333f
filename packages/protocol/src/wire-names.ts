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
  /** `false` on answers that only say "nothing new" (docs/protocol.md §5), `true` otherwise. */
  hasData: 'electric-has-data',
  /** `true` on subset snapshot answers (docs/protocol.md §3.10). */
  snapshot: 'electric-snapshot',
  retryAfter: 'retry-after',
  etag: 'etag',
  ifNoneMatch: 'if-none-match',
  cacheControl: 'cache-control',
  contentType: 'content-type',
  /** `Bearer <secret>`: the secret without putting it in URLs (docs/protocol.md §1). */
  authorization: 'authorization',
  /** `no` on SSE streams: nginx must pass each event on at once, not buffer the stream. */
  accelBuffering: 'x-accel-buffering',
  /** `websocket` on the 426 of a plain `GET /v1/ws` (docs/protocol.md §12.1). */
  upgrade: 'upgrade',
  /** Read on upgrades: one with a body cannot be answered as a plain request (§12.1). */
  contentLength: 'content-length',
  transferEncoding: 'transfer-encoding',
  /** `close` on upgrades refused with an HTTP answer (§12.1). */
  connection: 'connection',
} as const;

/** The content type of SSE live streams (docs/protocol.md §3.9). */
export const EVENT_STREAM_TYPE = 'text/event-stream';

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
  /** With `live`: answer as an SSE stream (docs/protocol.md §3.9). */
  liveSse: 'live_sse',
  /** The name older official clients send for `live_sse` (both are sent by current ones). */
  experimentalLiveSse: 'experimental_live_sse',
  /** Ignored by the server; makes a URL unique so no cache answers it with an older response. */
  cacheBuster: 'cache-buster',
  /** Subset snapshots (docs/protocol.md §3.10): any of these makes a GET one. */
  subsetWhere: 'subset__where',
  /** A JSON object `{"1":"x",…}`: the values of the subset's `$1…$n`. */
  subsetParams: 'subset__params',
  subsetLimit: 'subset__limit',
  subsetOffset: 'subset__offset',
  subsetOrderBy: 'subset__order_by',
} as const;

/** What every subset parameter's name starts with (`subset__where_expr` and others included). */
export const SUBSET_PARAM_PREFIX = 'subset__';

/**
 * The fields of a subset: the keys of a `POST /v1/shape` body (at its top level or inside
 * `subset`), and the names its 400s are listed under, inside `errors.subset`.
 */
export const SUBSET_FIELDS = {
  subset: 'subset',
  where: 'where',
  params: 'params',
  limit: 'limit',
  offset: 'offset',
  orderBy: 'order_by',
} as const;

export const PATHS = {
  shape: '/v1/shape',
  health: '/v1/health',
  status: '/v1/status',
  metrics: '/metrics',
  /** The WebSocket live transport (docs/protocol.md §12). */
  ws: '/v1/ws',
} as const;

/** Bodies of `GET /v1/health` (Electric-compatible). */
export type HealthStatus = 'active' | 'starting';

/** The server's overall state as published by `GET /v1/status` (docs/protocol.md §7). */
export type ServerState = 'starting' | 'live' | 'fallback' | 'unavailable';
