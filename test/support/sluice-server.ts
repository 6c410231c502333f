import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestDatabase } from '@sluice/harness';
import { buildApp, loadConfig, type AppConfig } from '@sluice/server';
import { waitForStatus } from './server-status.js';
import type { FastifyInstance } from 'fastify';

export interface RunningSluice {
  app: FastifyInstance;
  baseUrl: string;
  storageDir: string;
  config: AppConfig;
  /** Closes the server; `keepStorage` leaves the shape logs for a restart. */
  close(options?: { keepStorage?: boolean }): Promise<void>;
}

/**
 * Runs a real Sluice (the app `main.ts` builds, listening on a free loopback port) against a test
 * database, with that database's own slot and publication names.
 */
export async function startSluice(
  db: TestDatabase,
  overrides: Partial<AppConfig> & { databaseUrl?: string } = {},
): Promise<RunningSluice> {
  const storageDir = overrides.storageDir ?? (await mkdtemp(join(tmpdir(), 'sluice-storage-')));
  const config: AppConfig = {
    ...loadConfig({}),
    databaseUrl: db.url,
    port: 0,
    logLevel: process.env.SLUICE_TEST_LOG_LEVEL ?? 'warn',
    slotName: db.slotName,
    publicationName: db.publicationName,
    storageDir,
    replicationRetryMinMs: 100,
    replicationRetryMaxMs: 1_000,
    longPollTimeoutMs: 5_000,
    ...overrides,
  };
  const app = await buildApp(config);
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    app,
    baseUrl: address,
    storageDir,
    config,
    async close(options = {}) {
      await app.close();
      if (!options.keepStorage) await rm(storageDir, { recursive: true, force: true });
    },
  };
}

/**
 * Waits until `/v1/status` says `live` (replication streaming). `/v1/health` is not enough: it
 * also answers 200 in fallback.
 */
export async function waitUntilLive(baseUrl: string, timeoutMs = 30_000): Promise<void> {
  await waitForStatus(baseUrl, 'live', timeoutMs);
}
