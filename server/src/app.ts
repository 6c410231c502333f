import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import cors from '@fastify/cors';
import { HEADERS } from '@sluice/protocol';
import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';
import type { Config } from './config/config-options.js';
import { registerErrorHandler } from './http/error-handler.js';
import { registerHealthRoute } from './http/health-route.js';
import { registerShapeRoute } from './http/shape-route.js';
import { ReplicationConsumer } from './replication/replication-consumer.js';
import { sessionOptionsString } from './shapes/session-settings.js';
import { ShapeRegistry } from './shapes/shape-registry.js';
import { StatusMonitor } from './status/status-monitor.js';

export { loadConfig, ConfigError } from './config/load-config.js';
export type { Config } from './config/config-options.js';
export { StatusMonitor } from './status/status-monitor.js';

export type AppConfig = Config & { databaseUrl: string };

/** How often shapes' tables are checked for being dropped or renamed. */
const RELATION_SWEEP_MS = 5_000;

/** Browsers hide response headers that are not listed; the client then fails (PROTOCOL.md §1). */
const EXPOSED_HEADERS = [
  HEADERS.handle,
  HEADERS.offset,
  HEADERS.schema,
  HEADERS.cursor,
  HEADERS.upToDate,
  HEADERS.fallbackMode,
  HEADERS.retryAfter,
  HEADERS.etag,
];

/**
 * Builds the Sluice HTTP application without listening (tests use `inject` or listen on port 0).
 * Replication starts when the app is ready; closing the app ends held long-polls first, then
 * the stream, the logs and the pool.
 */
export async function buildApp(config: AppConfig): Promise<FastifyInstance> {
  const app = Fastify({ logger: { level: config.logLevel }, forceCloseConnections: true });
  await app.register(cors, {
    origin: '*',
    methods: ['GET', 'DELETE', 'OPTIONS'],
    exposedHeaders: EXPOSED_HEADERS,
    maxAge: 86_400,
  });
  registerErrorHandler(app);

  const storageDir = config.storageDir ?? join(config.dataDir, 'storage');
  const status = new StatusMonitor();
  const sessionOptions = sessionOptionsString();
  const pool = new pg.Pool({
    connectionString: config.databaseUrl,
    options: sessionOptions,
    max: 10,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
  });
  // An idle connection that dies (Postgres restart) emits 'error' on the pool; unhandled, it
  // would crash the process.
  pool.on('error', (error) => app.log.warn({ err: error }, 'idle database connection failed'));

  const registry = new ShapeRegistry({
    storageDir,
    chunkBytes: config.chunkBytes,
    pool,
    publicationName: config.publicationName,
    log: app.log,
  });
  const consumer = new ReplicationConsumer({
    connectionString: config.databaseUrl,
    sessionOptions,
    slotName: config.slotName,
    publicationName: config.publicationName,
    storageDir,
    retryMinMs: config.replicationRetryMinMs,
    retryMaxMs: config.replicationRetryMaxMs,
    registry,
    status,
    log: app.log,
  });
  const closing = new AbortController();

  registerHealthRoute(app, status);
  registerShapeRoute(app, {
    registry,
    lastSeenLsn: () => consumer.lastSeenLsn(),
    continuityChecked: (timeoutMs) => consumer.continuityChecked(timeoutMs),
    longPollTimeoutMs: config.longPollTimeoutMs,
    maxAgeS: config.cacheMaxAgeS,
    staleAgeS: config.cacheStaleAgeS,
    closing: closing.signal,
    secret: config.secret,
    enableDelete: config.enableShapeDelete,
    maxConcurrentInitial: config.maxConcurrentInitial,
    maxConcurrentLive: config.maxConcurrentLive,
  });
  app.decorate('status', status);

  // Dropped and renamed tables send nothing through replication: look for them now and then.
  let sweep: NodeJS.Timeout | undefined;
  app.addHook('onReady', async () => {
    await mkdir(storageDir, { recursive: true });
    await registry.load();
    consumer.start();
    sweep = setInterval(() => {
      registry
        .verifyRelations()
        .catch((error: unknown) => app.log.warn({ err: error }, 'checking tables failed'));
    }, RELATION_SWEEP_MS);
  });
  // Long-polls end before the server waits for connections to drain (DESIGN.md invariant 7).
  app.addHook('preClose', (done) => {
    closing.abort();
    registry.wakeAll();
    done();
  });
  app.addHook('onClose', async () => {
    clearInterval(sweep);
    await consumer.close();
    await registry.close();
    await pool.end();
  });
  return app;
}

declare module 'fastify' {
  interface FastifyInstance {
    status: StatusMonitor;
  }
}
