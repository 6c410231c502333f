import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';
import type { Config } from './config/config-options.js';
import { registerHealthRoute } from './http/health-route.js';
import { StatusMonitor } from './status/status-monitor.js';

export { loadConfig, ConfigError } from './config/load-config.js';
export type { Config } from './config/config-options.js';
export { StatusMonitor } from './status/status-monitor.js';

export type AppConfig = Config & { databaseUrl: string };

/**
 * Builds the Sluice HTTP application without listening (tests use `inject` or listen on port 0).
 * Closing the app closes everything it opened.
 */
export async function buildApp(config: AppConfig): Promise<FastifyInstance> {
  const app = Fastify({ logger: { level: config.logLevel } });
  const status = new StatusMonitor();
  const pool = new pg.Pool({
    connectionString: config.databaseUrl,
    max: 4,
    connectionTimeoutMillis: 5_000,
  });
  // An idle connection that dies (Postgres restart) emits 'error' on the pool; unhandled, it
  // would crash the process.
  pool.on('error', (error) => app.log.warn({ err: error }, 'idle database connection failed'));

  registerHealthRoute(app, status);
  app.decorate('status', status);

  app.addHook('onReady', async () => {
    try {
      await pool.query('SELECT 1');
      status.reportDatabase(true);
    } catch (error) {
      status.reportDatabase(false, (error as Error).message);
      app.log.error({ err: error }, 'database unreachable at start');
    }
  });
  app.addHook('onClose', async () => {
    await pool.end();
  });
  return app;
}

declare module 'fastify' {
  interface FastifyInstance {
    status: StatusMonitor;
  }
}
