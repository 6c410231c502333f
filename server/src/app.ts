import { setMaxListeners } from 'node:events';
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import cors from '@fastify/cors';
import { HEADERS } from '@sluice/protocol';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Config } from './config/config-options.js';
import { registerErrorHandler } from './http/error-handler.js';
import { registerHealthRoute } from './http/health-route.js';
import { LOG_SERIALIZERS } from './http/log-serializers.js';
import { LongPollPark } from './http/long-poll-park.js';
import { registerMetricsRoute } from './http/metrics-route.js';
import { registerNotFoundHandler } from './http/not-found-handler.js';
import { RequestMetrics } from './http/request-metrics.js';
import { SecretCheck } from './http/secret-check.js';
import { parseQueryString } from './http/query-string.js';
import { ShapeAdmission } from './http/shape-admission.js';
import { registerShapeRoute } from './http/shape-route.js';
import type { ShapeAnswerContext } from './http/shape-answer-context.js';
import { registerStatusRoute } from './http/status-route.js';
import { DatabaseProbe } from './status/database-probe.js';
import { devPage } from './dev/dev-page.js';
import { QueryExecutor } from './db/query-executor.js';
import { FallbackQueries } from './shapes/fallback-queries.js';
import { SubsetQueries } from './shapes/subset-query.js';
import { ChunkCache } from './storage/chunk-cache.js';
import { openShapeStorage } from './storage/open-shape-storage.js';
import type { StorageHealth } from './storage/shape-storage.js';
import { SluiceMetrics } from './status/sluice-metrics.js';
import { ReplicationConsumer } from './replication/replication-consumer.js';
import { StorageCoordinator } from './replication/storage-coordinator.js';
import { sessionOptionsString } from './pg/session-settings.js';
import { TablePolicy } from './pg/table-policy.js';
import { ShapeRegistry } from './shapes/shape-registry.js';
import { StatusMonitor } from './status/status-monitor.js';
import { registerWsTransport } from './ws/ws-transport.js';

export { loadConfig, ConfigError } from './config/load-config.js';
export type { Config } from './config/config-options.js';
export { StatusMonitor } from './status/status-monitor.js';

export type AppConfig = Config & { databaseUrl: string };

/** How often shapes' tables are checked for being dropped or renamed. */
const RELATION_SWEEP_MS = 5_000;
/**
 * The database probe: every 5 s while live (slot lag for /v1/status and /metrics), every second
 * otherwise, so an outage's end is noticed quickly; a probe gets 5 s to answer.
 */
const PROBE_LIVE_INTERVAL_MS = 5_000;
const PROBE_DEGRADED_INTERVAL_MS = 1_000;
const PROBE_TIMEOUT_MS = 5_000;
/**
 * How often Node looks for requests past their header or request timeout; its default (30 s)
 * would let a slow client hold a connection for that much longer than the timeout says.
 */
const CONNECTIONS_CHECK_MS = 1_000;

/**
 * Browsers hide response headers that are not listed; the client then fails (docs/protocol.md
 * §1).
 */
const EXPOSED_HEADERS = [
  HEADERS.handle,
  HEADERS.offset,
  HEADERS.schema,
  HEADERS.cursor,
  HEADERS.upToDate,
  HEADERS.fallbackMode,
  HEADERS.hasData,
  HEADERS.snapshot,
  HEADERS.retryAfter,
  HEADERS.etag,
].join(', ');
/**
 * What `@fastify/cors` (configured below with the same values) adds to a `GET`, for the requests
 * answered before Fastify (`LongPollPark`). One string for every response: a list would be joined
 * anew for each (and kept by each held long-poll until it is answered).
 */
const CORS_HEADERS = [
  'access-control-allow-origin',
  '*',
  'access-control-expose-headers',
  EXPOSED_HEADERS,
];

/**
 * Builds the Sluice HTTP application without listening (tests use `inject` or listen on port 0).
 * Replication starts when the app is ready; closing the app ends held long-polls first, then
 * the stream, the logs and the pool.
 */
export async function buildApp(config: AppConfig): Promise<FastifyInstance> {
  // SLUICE_TABLES is read with the `table` parameter's rules, which live above the config layer.
  const tables = TablePolicy.fromConfig(config);
  const whereLimits = {
    maxLength: config.whereMaxLength,
    maxNodes: config.whereMaxNodes,
    maxDepth: config.whereMaxDepth,
  };
  // Set once the shape route's context exists (`LongPollPark`); until then every request goes to
  // Fastify.
  let takeHeld = (_req: http.IncomingMessage, _res: http.ServerResponse): boolean => false;
  const app = Fastify({
    // Request URLs are logged with `secret` redacted.
    logger: { level: config.logLevel, serializers: LOG_SERIALIZERS },
    forceCloseConnections: true,
    routerOptions: { querystringParser: parseQueryString },
    // Live long-polls that must wait are parked before Fastify routes them (`LongPollPark`).
    serverFactory: (handler) => {
      const server = http.createServer(
        {
          // No connection is held open indefinitely (docs/security.md): the request must arrive
          // in time (headers included; only subset POSTs have bodies, of
          // SLUICE_SUBSET_MAX_BODY_BYTES at most), a quiet connection is closed, and so is an
          // idle keep-alive one.
          headersTimeout: config.requestTimeoutMs,
          requestTimeout: config.requestTimeoutMs,
          keepAliveTimeout: config.keepAliveTimeoutMs,
          connectionsCheckingInterval: CONNECTIONS_CHECK_MS,
        },
        (req, res) => {
          if (!takeHeld(req, res)) handler(req, res);
        },
      );
      server.setTimeout(config.connectionTimeoutMs);
      return server;
    },
  });
  const storage = await openShapeStorage({
    config,
    storageDir: config.storageDir ?? join(config.dataDir, 'storage'),
    chunkBytes: config.chunkBytes,
    chunkCache: new ChunkCache(config.chunkCacheBytes),
    log: app.log,
  });
  const sessionOptions = sessionOptionsString();
  const status = new StatusMonitor({
    slotName: config.slotName,
    // The registry is built below; the count is read when a document is built.
    shapeCount: () => registry.size,
    storageHealth: () => storage.health(),
    log: app.log,
  });
  const reportStorage = ({ state }: StorageHealth) =>
    state === 'up' ? status.storageReachable() : status.storageUnreachable();
  storage.onHealthChange(reportStorage);
  reportStorage(storage.health());
  const metrics = new SluiceMetrics(
    status,
    () => executor.states(),
    () => ({ shapes: registry.size, logBytes: registry.logBytes }),
  );
  const requestMetrics = new RequestMetrics(metrics);
  // Before CORS, whose hook answers preflights without running later ones.
  requestMetrics.register(app);
  await app.register(cors, {
    origin: '*',
    methods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
    exposedHeaders: EXPOSED_HEADERS,
    maxAge: 86_400,
  });
  const executor: QueryExecutor = new QueryExecutor({
    primaryUrl: config.databaseUrl,
    replicaUrl: config.databaseReplicaUrl,
    sessionOptions,
    poolSize: config.dbPoolSize,
    connectTimeoutMs: config.dbConnectTimeoutMs,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    idleValidationMs: config.dbIdleValidationMs,
    maxRetries: config.dbMaxRetries,
    retryIntervalMs: config.dbRetryIntervalMs,
    maxBackoffMs: config.dbMaxBackoffMs,
    replicaAttempts: config.dbReplicaAttempts,
    circuitFailureThreshold: config.dbCircuitFailureThreshold,
    circuitResetMs: config.dbCircuitResetMs,
    onRetry: (database, errorClass) => metrics.dbRetries.inc({ database, class: errorClass }),
    onStaleConnection: (database) => metrics.dbStaleConnections.inc({ database }),
    onAttempt: (database, outcome) => metrics.dbAttempts.inc({ database, outcome }),
    onBreaker: (database, to) => metrics.dbBreakerTransitions.inc({ database, to }),
    onChange: () => reportDatabases(),
    log: app.log,
  });
  const reportDatabases = () => {
    const { primary, replica } = executor.states();
    status.reportQueryDatabases({
      replica: replica === undefined ? 'none' : replica.up === false ? 'down' : 'up',
      breaker: primary.breaker,
    });
  };
  reportDatabases();
  const registry: ShapeRegistry = new ShapeRegistry({
    storage,
    executor,
    publicationName: config.publicationName,
    tables,
    whereLimits,
    // Below the pool's size (loadConfig checks a set value): connections stay for the rest.
    maxConcurrentSnapshots: config.maxConcurrentSnapshots ?? Math.max(1, config.dbPoolSize - 2),
    filteredSnapshotTimeoutMs: config.filteredSnapshotTimeoutMs,
    maxShapes: config.maxShapes,
    maxShapesPerTable: config.maxShapesPerTable,
    maxConcurrentCreations: config.maxConcurrentInitial,
    idleTimeoutMs: config.shapeIdleTimeoutS * 1000,
    // The consumer is built below; it is only asked once shapes are being created.
    recentCommits: () => consumer.recentCommits(),
    log: app.log,
  });
  const probe = new DatabaseProbe({
    connectionString: config.databaseUrl,
    slotName: config.slotName,
    status,
    liveIntervalMs: PROBE_LIVE_INTERVAL_MS,
    degradedIntervalMs: PROBE_DEGRADED_INTERVAL_MS,
    timeoutMs: PROBE_TIMEOUT_MS,
    log: app.log,
  });
  registerErrorHandler(app, () => probe.probeNow());
  const fallback = new FallbackQueries({
    executor,
    maxAgeMs: config.fallbackMaxAgeS * 1000,
    maxConcurrent: config.maxConcurrentFallback,
    maxCacheBytes: config.fallbackCacheBytes,
    metrics,
    tables,
    whereLimits,
  });
  // Snapshots from an outage are never asked for once live again; their memory goes.
  status.onChange(({ to }) => {
    if (to === 'live') fallback.clear();
  });
  // Other servers may share a Redis storage: this one loads its shapes once it knows whether it
  // writes them (it holds the replication lock) or reads what another writes (docs/operations.md,
  // "Several servers").
  const coordinator =
    storage.channel === undefined
      ? undefined
      : new StorageCoordinator({
          storage,
          channel: storage.channel,
          instance: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
          registry,
          status,
          heartbeatMs: config.writerHeartbeatMs,
          silentMs: config.writerSilentMs,
          durableLsn: () => consumer.lastSeenLsn(),
          log: app.log,
        });
  if (coordinator !== undefined) {
    registry.awaitLoad();
    status.reportStorageServers(coordinator.instance, null);
  }
  const consumer: ReplicationConsumer = new ReplicationConsumer({
    connectionString: config.replicationDatabaseUrl ?? config.databaseUrl,
    sessionOptions,
    slotName: config.slotName,
    publicationName: config.publicationName,
    publish: config.publish,
    storage,
    coordinator,
    takeoverRetryMs: config.takeoverRetryMs,
    retryMinMs: config.replicationRetryMinMs,
    retryMaxMs: config.replicationRetryMaxMs,
    livenessTimeoutMs: config.replicationLivenessTimeoutMs,
    registry,
    status,
    onFailure: () => probe.probeNow(),
    log: app.log,
  });
  const closing = new AbortController();
  // Every held fallback-handle poll listens for shutdown on this one signal.
  setMaxListeners(0, closing.signal);

  registerNotFoundHandler(app);
  registerHealthRoute(app, status);
  await registerStatusRoute(app, status, config.statusMaxAgeS);
  // loadConfig refuses SLUICE_METRICS_REQUIRE_SECRET without a secret.
  const metricsSecret =
    config.metricsRequireSecret && config.secret !== undefined
      ? new SecretCheck(config.secret)
      : undefined;
  registerMetricsRoute(app, metrics, metricsSecret);
  // Both live transports (HTTP and WebSocket) answer from the same registry and logs.
  const shapeContext: ShapeAnswerContext = {
    registry,
    fallback,
    subsets: new SubsetQueries({
      executor,
      tables,
      whereLimits,
      timeoutMs: config.filteredSnapshotTimeoutMs,
      maxRows: config.subsetMaxRows,
      recentCommits: () => consumer.recentCommits(),
    }),
    status,
    replication: consumer,
    longPoll: { timeoutMs: config.longPollTimeoutMs, closing: closing.signal },
    sse: { timeoutMs: config.sseTimeoutMs, keepAliveMs: config.sseKeepAliveMs },
    cache: {
      maxAgeS: config.cacheMaxAgeS,
      staleAgeS: config.cacheStaleAgeS,
      fallbackMaxAgeS: config.fallbackMaxAgeS,
    },
  };
  const admission = new ShapeAdmission({
    maxConcurrentInitial: config.maxConcurrentInitial,
    maxConcurrentLive: config.maxConcurrentLive,
    maxLivePerClient: config.maxLivePerClient,
    clientAddressHeader: config.clientAddressHeader,
  });
  registerShapeRoute(
    app,
    shapeContext,
    {
      secret: config.secret,
      enableDelete: config.enableShapeDelete,
      admission,
      subsetMaxBodyBytes: config.subsetMaxBodyBytes,
    },
    requestMetrics,
  );
  const park = new LongPollPark({
    context: shapeContext,
    admission,
    metrics: requestMetrics,
    secret: config.secret === undefined ? undefined : new SecretCheck(config.secret),
    baseHeaders: CORS_HEADERS,
    log: app.log,
    onUnreachable: () => probe.probeNow(),
  });
  takeHeld = (req, res) => park.take(req, res);
  registerWsTransport(
    app,
    shapeContext,
    {
      secret: config.secret,
      allowedOrigins: config.wsAllowedOrigins,
      maxSockets: config.wsMaxSockets,
      maxSubscriptions: config.wsMaxSubscriptions,
      maxFrameBytes: config.wsMaxFrameBytes,
      maxBufferedBytes: config.wsMaxBufferedBytes,
      heartbeatMs: config.wsHeartbeatMs,
    },
    metrics.registry,
    () => probe.probeNow(),
  );
  app.decorate('status', status);
  if (config.devPage) await app.register(devPage);

  // Dropped and renamed tables send nothing through replication: look for them now and then.
  let sweep: NodeJS.Timeout | undefined;
  app.addHook('onReady', (done) => {
    // Nothing here takes longer with more stored shapes: they are reopened in the background
    // (shape requests answer 503 meanwhile), so the server listens at once. Replication starts
    // once they all are: every transaction then finds every shape it concerns, and the slot
    // keeps what arrives meanwhile (docs/architecture.md, "Start-up").
    if (coordinator === undefined) registry.load();
    probe.start();
    void registry.loaded.then(() => consumer.start());
    sweep = setInterval(() => {
      registry
        .verifyRelations()
        .catch((error: unknown) => app.log.warn({ err: error }, 'checking tables failed'));
    }, RELATION_SWEEP_MS);
    done();
  });
  // Long-polls end before the server waits for connections to drain (docs/architecture.md
  // invariant 7).
  app.addHook('preClose', (done) => {
    closing.abort();
    registry.wakeAll();
    done();
  });
  app.addHook('onClose', async () => {
    clearInterval(sweep);
    coordinator?.close();
    await consumer.close();
    await probe.close();
    await registry.close();
    await storage.close();
    await executor.close();
  });
  return app;
}

declare module 'fastify' {
  interface FastifyInstance {
    status: StatusMonitor;
  }
}
