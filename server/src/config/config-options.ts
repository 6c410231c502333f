/**
 * Every setting Sluice reads, with its default and parser. `loadConfig` validates them all at
 * once; `docs/configuration.md` documents each, and a test keeps the two in step.
 */
export interface OptionSpec<T> {
  env: string;
  description: string;
  /** Written in the docs; `undefined` means the option is optional and unset by default. */
  default: T | undefined;
  parse(raw: string): T;
}

const integer =
  (min: number, max = Number.MAX_SAFE_INTEGER) =>
  (raw: string): number => {
    if (!/^-?\d+$/.test(raw.trim())) throw new Error(`must be an integer, got "${raw}"`);
    const value = Number(raw);
    if (value < min || value > max)
      throw new Error(`must be between ${min} and ${max}, got ${value}`);
    return value;
  };

const text = (raw: string): string => {
  if (raw.trim() === '') throw new Error('must not be empty');
  return raw;
};

const postgresUrl = (raw: string): string => {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error('must be a URL such as postgres://user:password@host:5432/db');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new Error(`must use the postgres:// scheme, got "${url.protocol}"`);
  }
  return raw;
};

const boolean = (raw: string): boolean => {
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new Error(`must be true or false, got "${raw}"`);
};

/** Slot and publication names are spliced into replication commands: keep them plain. */
const sqlName = (raw: string): string => {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(raw)) {
    throw new Error(`must be lower-case letters, digits and _ (at most 63), got "${raw}"`);
  }
  return raw;
};

/** How tables get ready for replication (docs/security.md, "Table policy"). */
export type PublishMode = 'auto' | 'manual';

const publishMode = (raw: string): PublishMode => {
  if (raw !== 'auto' && raw !== 'manual') throw new Error(`must be auto or manual, got "${raw}"`);
  return raw;
};

/** Where shapes are kept (docs/operations.md, "Storage"). */
export type StorageBackend = 'disk' | 'redis';

const storageBackend = (raw: string): StorageBackend => {
  if (raw !== 'disk' && raw !== 'redis') throw new Error(`must be disk or redis, got "${raw}"`);
  return raw;
};

const redisUrl = (raw: string): string => {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error('must be a URL such as redis://:password@host:6379/0');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new Error(`must use the redis:// or rediss:// scheme, got "${url.protocol}"`);
  }
  return raw;
};

/** `host:port,host:port`: the Sentinels to ask where the master is. */
const redisSentinels = (raw: string): { host: string; port: number }[] => {
  const sentinels = raw.split(',').map((item) => {
    const match = /^\s*(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})\s*$/.exec(item);
    const port = Number(match?.[2]);
    if (!match || port < 1 || port > 65_535) {
      throw new Error(`must be a comma-separated list of host:port, got "${item.trim()}"`);
    }
    return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
  });
  return sentinels;
};

/** Redis keys start with it, inside a hash tag: no braces, spaces or colons' worth of surprises. */
const keyPrefix = (raw: string): string => {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(raw)) {
    throw new Error(`must be 1 to 64 letters, digits, _ . or -, got "${raw}"`);
  }
  return raw;
};

const headerName = (raw: string): string => {
  if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(raw)) {
    throw new Error(`must be an HTTP header name, got "${raw}"`);
  }
  return raw.toLowerCase();
};

const logLevel = (raw: string): string => {
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  if (!levels.includes(raw)) throw new Error(`must be one of ${levels.join(', ')}, got "${raw}"`);
  return raw;
};

/** Browser origins as they appear in an `Origin` header: `scheme://host[:port]`, nothing more. */
const originList = (raw: string): readonly string[] => {
  const origins = raw.split(',').map((part) => part.trim());
  for (const origin of origins) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || parsed.origin === 'null' || parsed.origin !== origin) {
      throw new Error(`must list origins such as https://app.example.com, got "${origin}"`);
    }
  }
  return Object.freeze(origins);
};

function option<T>(spec: OptionSpec<T>): OptionSpec<T> {
  return spec;
}

export const CONFIG_OPTIONS = {
  databaseUrl: option({
    env: 'DATABASE_URL',
    description:
      'Postgres to serve. Unset: Sluice starts an embedded Postgres under `SLUICE_DATA_DIR` with a demo table (development only).',
    default: undefined,
    parse: postgresUrl,
  }),
  replicationDatabaseUrl: option({
    env: 'SLUICE_REPLICATION_DATABASE_URL',
    description:
      'Connection for the replication stream when it must differ from `DATABASE_URL` (for example when `DATABASE_URL` goes through PgBouncer, which cannot carry replication). Unset: `DATABASE_URL`.',
    default: undefined,
    parse: postgresUrl,
  }),
  databaseReplicaUrl: option({
    env: 'DATABASE_REPLICA_URL',
    description:
      'A streaming read replica of `DATABASE_URL`. Fallback rows and catalog sweeps read it first, initial snapshots when it has replayed far enough; the primary answers when it cannot. Unset: everything reads the primary.',
    default: undefined,
    parse: postgresUrl,
  }),
  dbPoolSize: option({
    env: 'SLUICE_DB_POOL_SIZE',
    description: 'Query connections per database (primary, and replica when set).',
    default: 10,
    parse: integer(1, 1000),
  }),
  dbConnectTimeoutMs: option({
    env: 'SLUICE_DB_CONNECT_TIMEOUT_MS',
    description: 'How long opening a query connection may take before it counts as failed.',
    default: 5_000,
    parse: integer(100),
  }),
  dbStatementTimeoutMs: option({
    env: 'SLUICE_DB_STATEMENT_TIMEOUT_MS',
    description:
      'Postgres `statement_timeout` of query connections. A connection on which a query has received nothing for this long plus 2 s (a network partition) is destroyed. Raise it if initial snapshots of very large tables need longer.',
    default: 60_000,
    parse: integer(100),
  }),
  dbIdleValidationMs: option({
    env: 'SLUICE_DB_IDLE_VALIDATION_MS',
    description:
      'A pooled connection idle for longer than this is checked with `SELECT 1` before it is used; one that fails is discarded.',
    default: 10_000,
    parse: integer(0),
  }),
  dbMaxRetries: option({
    env: 'SLUICE_DB_MAX_RETRIES',
    description:
      'Retries of a query that failed transiently (connection lost or refused, serialization failure, deadlock, timeout, resource errors); 0 disables retrying.',
    default: 3,
    parse: integer(0, 100),
  }),
  dbRetryIntervalMs: option({
    env: 'SLUICE_DB_RETRY_INTERVAL_MS',
    description: 'First wait before a retry; it doubles for each further retry, with ±25 % jitter.',
    default: 100,
    parse: integer(1),
  }),
  dbMaxBackoffMs: option({
    env: 'SLUICE_DB_MAX_BACKOFF_MS',
    description: 'Longest wait between two retries (before jitter).',
    default: 2_000,
    parse: integer(1),
  }),
  dbReplicaAttempts: option({
    env: 'SLUICE_DB_REPLICA_ATTEMPTS',
    description:
      'Tries on the replica before a replica-first query is run on the primary (once) instead.',
    default: 2,
    parse: integer(1, 100),
  }),
  dbCircuitFailureThreshold: option({
    env: 'SLUICE_DB_CIRCUIT_FAILURE_THRESHOLD',
    description:
      'Consecutive connection failures to one database that open its circuit breaker; while open, requests needing it get 503 at once.',
    default: 5,
    parse: integer(1),
  }),
  dbCircuitResetMs: option({
    env: 'SLUICE_DB_CIRCUIT_RESET_MS',
    description:
      'How long an open breaker waits before letting one trial query through (half-open); success closes it.',
    default: 10_000,
    parse: integer(100),
  }),
  host: option({
    env: 'SLUICE_HOST',
    description: 'Address the HTTP server listens on. Use `0.0.0.0` in containers.',
    default: '127.0.0.1',
    parse: text,
  }),
  port: option({
    env: 'SLUICE_PORT',
    description: 'HTTP port (0 picks a free one).',
    default: 3000,
    parse: integer(0, 65535),
  }),
  requestTimeoutMs: option({
    env: 'SLUICE_REQUEST_TIMEOUT_MS',
    description:
      'How long a client may take to send a whole request, headers included (Sluice takes no request bodies); a slower one gets 408 and its connection is closed. Answers are not limited by it.',
    default: 10_000,
    parse: integer(1_000, 300_000),
  }),
  connectionTimeoutMs: option({
    env: 'SLUICE_CONNECTION_TIMEOUT_MS',
    description:
      'A connection on which nothing is sent or received for this long is closed, whatever it is doing (a client that stopped reading, a request that never ends). Must exceed the longest quiet answer: a held long-poll (`SLUICE_LONG_POLL_TIMEOUT_MS`, at most 40 s, hence the floor) and an initial snapshot (`SLUICE_DB_STATEMENT_TIMEOUT_MS`).',
    default: 120_000,
    parse: integer(45_000),
  }),
  keepAliveTimeoutMs: option({
    env: 'SLUICE_KEEP_ALIVE_TIMEOUT_MS',
    description:
      'How long an idle keep-alive connection is kept open between requests. Keep it above the idle timeout of a load balancer in front (often 60 s), or the balancer may send a request on a connection Sluice is closing.',
    default: 72_000,
    parse: integer(1_000),
  }),
  dataDir: option({
    env: 'SLUICE_DATA_DIR',
    description:
      'Folder for local state: the embedded Postgres cluster (when `DATABASE_URL` is unset).',
    default: '.sluice',
    parse: text,
  }),
  storageDir: option({
    env: 'SLUICE_STORAGE_DIR',
    description:
      'Folder for shape logs (durable; keep it across restarts so handles stay valid). Unset: `<SLUICE_DATA_DIR>/storage`.',
    default: undefined,
    parse: text,
  }),
  storage: option<StorageBackend>({
    env: 'SLUICE_STORAGE',
    description:
      '`disk`: shape logs in `SLUICE_STORAGE_DIR`. `redis`: shape logs in Redis at `SLUICE_REDIS_URL` (docs/operations.md, "Redis storage").',
    default: 'disk',
    parse: storageBackend,
  }),
  redisUrl: option({
    env: 'SLUICE_REDIS_URL',
    description:
      'The Redis that holds shape logs: `redis://[:password@]host:port[/db]`, or `rediss://` for TLS. Required when `SLUICE_STORAGE=redis`.',
    default: undefined,
    parse: redisUrl,
  }),
  redisSentinels: option({
    env: 'SLUICE_REDIS_SENTINELS',
    description:
      'Redis Sentinels as `host:port,host:port`: when set, Sluice asks them for the master of `SLUICE_REDIS_SENTINEL_NAME` and follows failovers; `SLUICE_REDIS_URL` then gives only the scheme, password and db (its host and port are ignored).',
    default: undefined,
    parse: redisSentinels,
  }),
  redisSentinelName: option({
    env: 'SLUICE_REDIS_SENTINEL_NAME',
    description: 'The master group name the Sentinels monitor (with `SLUICE_REDIS_SENTINELS`).',
    default: 'mymaster',
    parse: (raw: string) => {
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(raw)) {
        throw new Error(`must be 1 to 64 letters, digits, _ . or -, got "${raw}"`);
      }
      return raw;
    },
  }),
  redisCluster: option({
    env: 'SLUICE_REDIS_CLUSTER',
    description:
      '`true`: `SLUICE_REDIS_URL` is one node of a Redis Cluster (the seed; the others are discovered). Its db must be 0.',
    default: false,
    parse: boolean,
  }),
  redisKeyPrefix: option({
    env: 'SLUICE_REDIS_KEY_PREFIX',
    description:
      'Start of every Redis key Sluice writes, so several deployments can share one Redis (letters, digits, `_`, `.`, `-`).',
    default: 'sluice',
    parse: keyPrefix,
  }),
  redisHealthCheckIntervalMs: option({
    env: 'SLUICE_REDIS_HEALTH_CHECK_INTERVAL_MS',
    description:
      'Redis is sent a PING this often; an unanswered one marks it down, so a dead connection is noticed within this plus `SLUICE_REDIS_COMMAND_TIMEOUT_MS` even when TCP does not notice.',
    default: 2_000,
    parse: integer(100),
  }),
  redisCommandTimeoutMs: option({
    env: 'SLUICE_REDIS_COMMAND_TIMEOUT_MS',
    description:
      'A Redis command unanswered for this long fails, and its connection is replaced. Also the connect timeout.',
    default: 2_000,
    parse: integer(100),
  }),
  redisCircuitFailureThreshold: option({
    env: 'SLUICE_REDIS_CIRCUIT_FAILURE_THRESHOLD',
    description:
      'Consecutive failed Redis commands (health PINGs included) that open its circuit breaker; while open, commands fail at once.',
    default: 5,
    parse: integer(1),
  }),
  redisCircuitResetMs: option({
    env: 'SLUICE_REDIS_CIRCUIT_RESET_MS',
    description:
      'How long an open Redis breaker waits before letting one command through (half-open); success closes it.',
    default: 5_000,
    parse: integer(100),
  }),
  takeoverRetryMs: option({
    env: 'SLUICE_TAKEOVER_RETRY_MS',
    description:
      'Several servers on one Redis storage: how often a server that reads what another writes tries to take the replication lock. The writer\'s death is noticed within this once Postgres has ended its session (docs/operations.md, "Several servers").',
    default: 2_000,
    parse: integer(100),
  }),
  writerHeartbeatMs: option({
    env: 'SLUICE_WRITER_HEARTBEAT_MS',
    description:
      'Several servers on one Redis storage: how often the writer tells the readers, over Redis pub/sub, that it is alive and whether it streams replication.',
    default: 1_000,
    parse: integer(100),
  }),
  writerSilentMs: option({
    env: 'SLUICE_WRITER_SILENT_MS',
    description:
      'A reader that has not heard the writer for this long answers in fallback mode (from Postgres) until it hears it again or takes over. Above `SLUICE_WRITER_HEARTBEAT_MS`.',
    default: 3_500,
    parse: integer(200),
  }),
  slotName: option({
    env: 'SLUICE_SLOT_NAME',
    description: 'Logical replication slot Sluice creates and consumes (one per server).',
    default: 'sluice_slot',
    parse: sqlName,
  }),
  publicationName: option({
    env: 'SLUICE_PUBLICATION_NAME',
    description:
      'Publication replication reads. With `SLUICE_PUBLISH=auto` Sluice creates it and adds tables when a shape first needs them; with `manual` the operator does.',
    default: 'sluice_pub',
    parse: sqlName,
  }),
  tables: option({
    env: 'SLUICE_TABLES',
    description:
      'The tables shapes may read, comma-separated: `schema.table` (spelled as in the `table` parameter) or `schema.*`. Unset: every table the database role can read. Tables in system schemas (`pg_catalog`, `information_schema`, `pg_*`) are never served. See docs/security.md, "Table policy".',
    default: undefined,
    parse: text,
  }),
  publish: option<PublishMode>({
    env: 'SLUICE_PUBLISH',
    description:
      '`auto`: Sluice creates the publication and, when a shape first needs a table, sets `REPLICA IDENTITY FULL` on it and adds it to the publication (DDL). `manual`: Sluice runs no DDL; the operator creates the publication and sets tables up, and a table that is not ready gets a 400 naming the SQL to run.',
    default: 'auto',
    parse: publishMode,
  }),
  chunkBytes: option({
    env: 'SLUICE_CHUNK_BYTES',
    description:
      "Size at which a shape log chunk is closed; one response never crosses a chunk. A log's first chunks are smaller (64 kB, then four times more each) so that a large snapshot's first rows go out at once.",
    default: 10 * 1024 * 1024,
    parse: integer(1024),
  }),
  chunkCacheBytes: option({
    env: 'SLUICE_CHUNK_CACHE_BYTES',
    description:
      'Bytes of sealed shape log chunks kept parsed in memory for catch-up readers, across all shapes; the least recently read go first. 0 reads every chunk from disk.',
    default: 128 * 1024 * 1024,
    parse: integer(0),
  }),
  longPollTimeoutMs: option({
    env: 'SLUICE_LONG_POLL_TIMEOUT_MS',
    description:
      'How long a live request is held before answering up-to-date (keep well under 45 s).',
    default: 20_000,
    parse: integer(100, 40_000),
  }),
  sseTimeoutMs: option({
    env: 'SLUICE_SSE_TIMEOUT_MS',
    description:
      'How long an SSE live stream (`live_sse=true`) stays open before it is ended; the client reconnects from its latest position. Its cache-control `max-age` is this in seconds, minus 1.',
    default: 60_000,
    parse: integer(1_000, 600_000),
  }),
  sseKeepAliveMs: option({
    env: 'SLUICE_SSE_KEEPALIVE_MS',
    description:
      'An SSE live stream with nothing to send for this long gets a `: keep-alive` comment, so proxies and `SLUICE_CONNECTION_TIMEOUT_MS` (at least 45 s, hence the ceiling) do not close it as idle.',
    default: 21_000,
    parse: integer(100, 40_000),
  }),
  wsMaxSockets: option({
    env: 'SLUICE_WS_MAX_SOCKETS',
    description:
      'Open WebSockets (`GET /v1/ws`) the process holds; an upgrade beyond it is answered 503 `SLUICE_ERR_OVERLOADED` with retry-after.',
    default: 20_000,
    parse: integer(1),
  }),
  wsMaxSubscriptions: option({
    env: 'SLUICE_WS_MAX_SUBSCRIPTIONS',
    description:
      'Subscriptions one WebSocket may hold at once; a subscribe beyond it gets an error frame (`SLUICE_ERR_WS_TOO_MANY_SUBSCRIPTIONS`).',
    default: 100,
    parse: integer(1, 100_000),
  }),
  wsMaxFrameBytes: option({
    env: 'SLUICE_WS_MAX_FRAME_BYTES',
    description:
      'Largest frame a WebSocket client may send, in bytes; a larger one closes the socket with 1009.',
    default: 65_536,
    parse: integer(1_024, 16_777_216),
  }),
  wsMaxBufferedBytes: option({
    env: 'SLUICE_WS_MAX_BUFFERED_BYTES',
    description:
      'Bytes a WebSocket may have waiting to be sent (its client reads too slowly); past it the socket is closed with 4000 and the client resumes from its last offsets. Each subscription also waits for its previous batch to be sent before reading the next.',
    default: 16_777_216,
    parse: integer(65_536),
  }),
  wsHeartbeatMs: option({
    env: 'SLUICE_WS_HEARTBEAT_MS',
    description:
      'Every WebSocket is pinged this often; one that has not answered the previous ping is cut, so a dead peer is noticed within two intervals.',
    default: 15_000,
    parse: integer(100, 600_000),
  }),
  wsAllowedOrigins: option({
    env: 'SLUICE_WS_ALLOWED_ORIGINS',
    description:
      'The browser origins allowed to open WebSockets, comma-separated (`https://app.example.com,http://localhost:5173`); an upgrade with another `Origin` is answered 403. Unset: any origin, as the HTTP API allows any (`access-control-allow-origin: *`). Upgrades without `Origin` (non-browser clients) are always allowed.',
    default: undefined,
    parse: originList,
  }),
  cacheMaxAgeS: option({
    env: 'SLUICE_CACHE_MAX_AGE_S',
    description: '`max-age` of catch-up responses, in seconds.',
    default: 60,
    parse: integer(0),
  }),
  cacheStaleAgeS: option({
    env: 'SLUICE_CACHE_STALE_AGE_S',
    description: '`stale-while-revalidate` of catch-up responses, in seconds.',
    default: 300,
    parse: integer(0),
  }),
  enableShapeDelete: option({
    env: 'SLUICE_ENABLE_SHAPE_DELETE',
    description: 'Allow `DELETE /v1/shape`.',
    default: false,
    parse: boolean,
  }),
  devPage: option({
    env: 'SLUICE_DEV_PAGE',
    description:
      "Serve the development page at `/`: a live table of one shape (`/?table=<name>`, default `demo_items`) and the client's mode (live or fallback), using the built `@sluice/client` (`npm run build`). Unset: on when `DATABASE_URL` is unset (embedded demo), off otherwise. Not for production.",
    default: undefined,
    parse: boolean,
  }),
  secret: option({
    env: 'SLUICE_SECRET',
    description:
      'When set, every shape request must carry it, as `secret=<value>` or `Authorization: Bearer <value>` (401 otherwise).',
    default: undefined,
    parse: text,
  }),
  metricsRequireSecret: option({
    env: 'SLUICE_METRICS_REQUIRE_SECRET',
    description: '`GET /metrics` needs `SLUICE_SECRET` too (which must then be set).',
    default: false,
    parse: boolean,
  }),
  maxLivePerClient: option({
    env: 'SLUICE_MAX_LIVE_PER_CLIENT',
    description:
      'Concurrent held live requests admitted from one client address; beyond it: 503 `SLUICE_ERR_OVERLOADED_PER_CLIENT` with retry-after. Behind a proxy, see `SLUICE_CLIENT_ADDRESS_HEADER`.',
    default: 1_000,
    parse: integer(1),
  }),
  clientAddressHeader: option({
    env: 'SLUICE_CLIENT_ADDRESS_HEADER',
    description:
      "Behind a trusted proxy: the request header it puts the client's address in (`x-forwarded-for`, `x-real-ip`, …; for a list, its last entry). Per-client limits then count by that address. Unset: the connection's address. Never set it without such a proxy: clients could name any address.",
    default: undefined,
    parse: headerName,
  }),
  maxConcurrentInitial: option({
    env: 'SLUICE_MAX_CONCURRENT_INITIAL',
    description:
      'Concurrent `offset=-1` requests admitted, and shapes being created at once whatever the request; beyond either: 503 `SLUICE_ERR_OVERLOADED` with retry-after.',
    default: 100,
    parse: integer(1),
  }),
  maxShapes: option({
    env: 'SLUICE_MAX_SHAPES',
    description:
      'Shapes the server holds at most (each costs memory and a log on disk); a request that would create one more gets 503 `SLUICE_ERR_SHAPE_LIMIT` with retry-after.',
    default: 10_000,
    parse: integer(1),
  }),
  maxShapesPerTable: option({
    env: 'SLUICE_MAX_SHAPES_PER_TABLE',
    description:
      'Shapes of one table the server holds at most (every change of the table is checked against each); beyond it: 503 `SLUICE_ERR_SHAPE_LIMIT` with retry-after.',
    default: 1_000,
    parse: integer(1),
  }),
  shapeIdleTimeoutS: option({
    env: 'SLUICE_SHAPE_IDLE_TIMEOUT_S',
    description:
      'A shape no request has read for this long, in seconds (a held live request counts as reading), is removed with its log; a client coming back with its handle gets 409 must-refetch.',
    default: 86_400,
    parse: integer(1),
  }),
  maxConcurrentLive: option({
    env: 'SLUICE_MAX_CONCURRENT_LIVE',
    description: 'Concurrent held live requests admitted; beyond it: 503 with retry-after.',
    default: 30_000,
    parse: integer(1),
  }),
  maxConcurrentSnapshots: option({
    env: 'SLUICE_MAX_CONCURRENT_SNAPSHOTS',
    description:
      'Shapes created (planned and snapshotted) at once; further new shapes wait their turn. Must be below `SLUICE_DB_POOL_SIZE`, so that catalog and fallback queries always find a connection. Unset: `SLUICE_DB_POOL_SIZE` minus 2, at least 1.',
    default: undefined,
    parse: integer(1),
  }),
  filteredSnapshotTimeoutMs: option({
    env: 'SLUICE_FILTERED_SNAPSHOT_TIMEOUT_MS',
    description:
      'Postgres `statement_timeout` of the initial snapshot of a shape with a `where` clause; a snapshot that takes longer is a 400 under `where` and no shape is made. At most `SLUICE_DB_STATEMENT_TIMEOUT_MS` (which unfiltered snapshots keep).',
    default: 15_000,
    parse: integer(100),
  }),
  subsetMaxRows: option({
    env: 'SLUICE_SUBSET_MAX_ROWS',
    description:
      'Most rows one subset snapshot answer holds (`subset__*` parameters or `POST /v1/shape`): a larger `limit`, or a subset without `limit` that matches more rows, is a 400 naming this option.',
    default: 10_000,
    parse: integer(1, 1_000_000),
  }),
  subsetMaxBodyBytes: option({
    env: 'SLUICE_SUBSET_MAX_BODY_BYTES',
    description:
      'Largest body of a `POST /v1/shape` subset request, in bytes; a larger one is a 413.',
    default: 65_536,
    parse: integer(1_024, 16_777_216),
  }),
  whereMaxLength: option({
    env: 'SLUICE_WHERE_MAX_LENGTH',
    description:
      'Longest `where` clause, in characters; a longer one is a 400. At most 16384: the length also bounds how deeply the clause parser recurses.',
    default: 8_192,
    parse: integer(1, 16_384),
  }),
  whereMaxNodes: option({
    env: 'SLUICE_WHERE_MAX_NODES',
    description:
      "Most syntax nodes (operators, names, constants, function calls, …) in a `where` clause's parse tree; more is a 400.",
    default: 1_000,
    parse: integer(1),
  }),
  whereMaxDepth: option({
    env: 'SLUICE_WHERE_MAX_DEPTH',
    description:
      "Deepest nesting of a `where` clause's parse tree (each operator, call or cast nests its operands one level deeper); deeper is a 400. At most 256.",
    default: 64,
    parse: integer(1, 256),
  }),
  replicationRetryMinMs: option({
    env: 'SLUICE_REPLICATION_RETRY_MIN_MS',
    description: 'Floor of the reconnect backoff of the replication stream.',
    default: 500,
    parse: integer(10),
  }),
  replicationRetryMaxMs: option({
    env: 'SLUICE_REPLICATION_RETRY_MAX_MS',
    description: 'Cap of the reconnect backoff of the replication stream.',
    default: 10_000,
    parse: integer(10),
  }),
  replicationLivenessTimeoutMs: option({
    env: 'SLUICE_REPLICATION_LIVENESS_TIMEOUT_MS',
    description:
      'A replication connection that has sent nothing for this long (pings included) is replaced, so a black-holed connection is noticed in bounded time.',
    default: 15_000,
    parse: integer(300),
  }),
  statusMaxAgeS: option({
    env: 'SLUICE_STATUS_MAX_AGE_S',
    description: '`max-age` of `GET /v1/status`, in seconds.',
    default: 5,
    parse: integer(0),
  }),
  fallbackMaxAgeS: option({
    env: 'SLUICE_FALLBACK_MAX_AGE_S',
    description:
      '`max-age` of shape responses in fallback mode, in seconds; also how long one fallback query answers identical requests.',
    default: 5,
    parse: integer(0),
  }),
  maxConcurrentFallback: option({
    env: 'SLUICE_MAX_CONCURRENT_FALLBACK',
    description:
      'Distinct fallback queries run at once (identical requests share one); beyond it: 503 with retry-after.',
    default: 8,
    parse: integer(1),
  }),
  fallbackCacheBytes: option({
    env: 'SLUICE_FALLBACK_CACHE_BYTES',
    description:
      'Bytes of fallback rows kept in memory for the cache window, across all shapes; the least recently used are dropped first (asked for again, they are queried again). Rows larger than this are served but not kept.',
    default: 67_108_864,
    parse: integer(0),
  }),
  logLevel: option({
    env: 'SLUICE_LOG_LEVEL',
    description: 'pino log level: fatal, error, warn, info, debug, trace or silent.',
    default: 'info',
    parse: logLevel,
  }),
};

type Options = typeof CONFIG_OPTIONS;
type ValueOf<S> = S extends OptionSpec<infer T> ? T : never;

/** The validated configuration: every option with a default is always present. */
export type Config = {
  readonly [K in keyof Options]: Options[K]['default'] extends undefined
    ? ValueOf<Options[K]> | undefined
    : ValueOf<Options[K]>;
};
