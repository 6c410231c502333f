import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestDatabase } from '@sluice/harness';
import { freePort } from '@sluice/local-postgres';
import { buildApp, loadConfig, type AppConfig } from '@sluice/server';
import type { FastifyInstance } from 'fastify';

/**
 * An in-process Sluice (configured like `startSluice`) that can be stopped and started again on
 * the same port and storage, so clients following its URL see the restart as an outage.
 */
export class StableSluice {
  readonly baseUrl: string;
  #app: FastifyInstance | undefined;

  private constructor(
    readonly config: AppConfig,
    readonly storageDir: string,
  ) {
    this.baseUrl = `http://127.0.0.1:${config.port}`;
  }

  static async start(db: TestDatabase, overrides: Partial<AppConfig> = {}): Promise<StableSluice> {
    const storageDir = await mkdtemp(join(tmpdir(), 'sluice-stable-'));
    const config: AppConfig = {
      ...loadConfig({}),
      databaseUrl: db.url,
      port: await freePort(),
      logLevel: process.env.SLUICE_TEST_LOG_LEVEL ?? 'warn',
      slotName: db.slotName,
      publicationName: db.publicationName,
      storageDir,
      replicationRetryMinMs: 100,
      replicationRetryMaxMs: 1_000,
      longPollTimeoutMs: 5_000,
      ...overrides,
    };
    const sluice = new StableSluice(config, storageDir);
    await sluice.resume();
    return sluice;
  }

  get running(): boolean {
    return this.#app !== undefined;
  }

  /** Starts the server again on the same port and storage (no-op while it runs). */
  async resume(): Promise<void> {
    if (this.#app) return;
    const app = await buildApp(this.config);
    await app.listen({ host: '127.0.0.1', port: this.config.port });
    this.#app = app;
  }

  /** Stops the server and keeps its storage. */
  async stop(): Promise<void> {
    const app = this.#app;
    this.#app = undefined;
    await app?.close();
  }

  /** Stops the server and removes its storage. */
  async close(): Promise<void> {
    await this.stop();
    await rm(this.storageDir, { recursive: true, force: true });
  }
}
