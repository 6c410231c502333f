import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config/load-config.js';
import { DEMO_TABLE, seedDemoTable } from './dev/demo-table.js';
import { startEmbeddedDatabase, type EmbeddedDatabase } from './dev/embedded-database.js';
import pino from 'pino';

/** Process entry point: configuration from the environment, then listen until a signal. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
  const log = pino({ level: config.logLevel });

  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (databaseUrl === undefined) {
    log.info('DATABASE_URL is not set: starting an embedded Postgres for development');
    embedded = await startEmbeddedDatabase(config.dataDir, log);
    databaseUrl = embedded.url;
    await seedDemoTable(databaseUrl);
  }

  const devPage = config.devPage ?? embedded !== undefined;
  const app = await buildApp({ ...config, databaseUrl, devPage });
  const address = await app.listen({ host: config.host, port: config.port });

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    log.info({ signal }, 'shutting down');
    await app.close();
    await embedded?.stop();
    process.exit(0);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => void shutdown(signal));
  }

  const table = embedded ? DEMO_TABLE : '<your_table>';
  process.stdout.write(
    `\nSluice is listening on ${address}\n` +
      `Try:\n  curl -i '${address}/v1/shape?table=${table}&offset=-1'\n\n`,
  );
  if (devPage) process.stdout.write(`Live table in a browser: ${address}/?table=${table}\n\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
