// Sluice built in the test's own process (`buildApp`), on a throwaway Postgres with one table
// `items (id int PRIMARY KEY, title text)` holding row 1: for tests that must see inside the
// server (count its calls, read its logs) while clients talk to it over real sockets.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StatusDocument } from '@sluice/protocol';
import { startPostgres, type TestDatabase } from '@sluice/harness';
import type { FastifyInstance } from 'fastify';
import { buildApp, type AppConfig } from './app.js';
import { loadConfig } from './config/load-config.js';

export interface InProcessApp {
  db: TestDatabase;
  app: FastifyInstance;
  baseUrl: string;
  /** Closes the app, then removes its storage, its database and Postgres. */
  stop(): Promise<void>;
}

/** How long the app may take to report `live` before the test fails instead of hanging. */
const LIVE_WITHIN_MS = 30_000;

/**
 * Starts the app and resolves once `/v1/status` says live (failing after LIVE_WITHIN_MS).
 * `prepare` runs before it listens (Fastify takes hooks only then).
 */
export async function startInProcessApp(
  config: Partial<AppConfig> = {},
  prepare: (app: FastifyInstance) => void = () => undefined,
): Promise<InProcessApp> {
  const postgres = await startPostgres();
  const db = await postgres.createDatabase();
  await db.query(`CREATE TABLE items (id int PRIMARY KEY, title text);
                  INSERT INTO items VALUES (1, 'first')`);
  const storageDir = await mkdtemp(join(tmpdir(), 'sluice-storage-'));
  const app = await buildApp({
    ...loadConfig({}),
    databaseUrl: db.url,
    port: 0,
    logLevel: 'warn',
    slotName: db.slotName,
    publicationName: db.publicationName,
    storageDir,
    ...config,
  });
  prepare(app);
  const baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
  const started: InProcessApp = {
    db,
    app,
    baseUrl,
    async stop() {
      await app.close();
      await rm(storageDir, { recursive: true, force: true });
      await db.drop();
      await postgres.stop();
    },
  };
  const status = async () =>
    ((await (await fetch(`${baseUrl}/v1/status`)).json()) as StatusDocument).status;
  const deadline = Date.now() + LIVE_WITHIN_MS;
  for (let last = await status(); last !== 'live'; last = await status()) {
    if (Date.now() > deadline) {
      await started.stop();
      throw new Error(`the app reported "${last}" for ${LIVE_WITHIN_MS} ms, never "live"`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return started;
}

/** The URL of the `items` shape with these parameters. */
export function itemsUrl(baseUrl: string, params: Record<string, string>): string {
  return `${baseUrl}/v1/shape?${new URLSearchParams({ table: 'items', ...params }).toString()}`;
}

/** The `items` shape's handle and the offset of its end, read over HTTP as a client reads it. */
export async function itemsEnd(baseUrl: string): Promise<{ handle: string; offset: string }> {
  let handle = '';
  let offset = '-1';
  for (;;) {
    const response = await fetch(itemsUrl(baseUrl, handle ? { offset, handle } : { offset }));
    assert.equal(response.status, 200);
    await response.arrayBuffer();
    handle = response.headers.get('electric-handle') ?? '';
    offset = response.headers.get('electric-offset') ?? '';
    if (response.headers.has('electric-up-to-date')) return { handle, offset };
  }
}
