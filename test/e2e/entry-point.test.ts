import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { startPostgres } from '@sluice/harness';
import { startServerProcess } from '../support/server-process.js';

async function waitForHealth(
  baseUrl: string,
): Promise<{ status: number; body: unknown; cacheControl: string | null }> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const response = await fetch(`${baseUrl}/v1/health`);
    const result = {
      status: response.status,
      body: await response.json(),
      cacheControl: response.headers.get('cache-control'),
    };
    if (result.status === 200 || Date.now() > deadline) return result;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('the entry point (npm start)', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('with no DATABASE_URL it starts an embedded Postgres, seeds a demo table and prints a curl', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'sluice-start-'));
    await chmod(dataDir, 0o755); // as root, the postgres user must reach it
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const server = await startServerProcess({
      DATABASE_URL: undefined,
      SLUICE_DATA_DIR: dataDir,
      SLUICE_PORT: '0',
      SLUICE_LOG_LEVEL: 'warn',
    });
    cleanups.push(() => server.stop('SIGKILL'));

    const health = await waitForHealth(server.baseUrl);
    assert.equal(health.status, 200);
    assert.deepEqual(health.body, { status: 'active' });
    assert.equal(health.cacheControl, 'no-cache, no-store, must-revalidate');
    // The printed curl returns the demo table.
    const curl = /curl -i '([^']*\/v1\/shape\?table=demo_items&offset=-1)'/.exec(server.stdout());
    assert.ok(curl?.[1], `a curl for the demo table is printed:\n${server.stdout()}`);
    const response = await fetch(curl[1]);
    assert.equal(response.status, 200);
    const messages = (await response.json()) as {
      value?: { title: string };
      headers: { operation?: string };
    }[];
    assert.deepEqual(
      messages.filter((m) => m.headers.operation === 'insert').map((m) => m.value?.title),
      [
        'Read docs/protocol.md',
        'Point @electric-sql/client at Sluice',
        'Insert a row and watch it arrive',
      ],
    );
    assert.ok(
      existsSync(join(dataDir, 'postgres', 'PG_VERSION')),
      'cluster lives under SLUICE_DATA_DIR',
    );

    // A clean shutdown also stops the embedded Postgres.
    assert.equal(await server.stop('SIGTERM'), 0);
    assert.ok(
      !existsSync(join(dataDir, 'postgres', 'postmaster.pid')),
      'embedded Postgres stopped',
    );

    // A second start reuses the cluster (no initdb) and keeps the demo rows.
    const again = await startServerProcess({
      DATABASE_URL: undefined,
      SLUICE_DATA_DIR: dataDir,
      SLUICE_PORT: '0',
      SLUICE_LOG_LEVEL: 'warn',
    });
    cleanups.push(() => again.stop('SIGKILL'));
    assert.equal((await waitForHealth(again.baseUrl)).status, 200);
    assert.equal(await again.stop('SIGTERM'), 0);
    assert.ok((await readdir(join(dataDir, 'postgres'))).includes('base'));
  });

  test('with DATABASE_URL it serves that database', async () => {
    const pg = await startPostgres();
    cleanups.push(() => pg.stop());
    const db = await pg.createDatabase();
    const server = await startServerProcess({
      DATABASE_URL: db.url,
      SLUICE_PORT: '0',
      SLUICE_LOG_LEVEL: 'warn',
    });
    cleanups.push(() => server.stop('SIGKILL'));
    const health = await waitForHealth(server.baseUrl);
    assert.equal(health.status, 200);
    assert.doesNotMatch(server.stdout(), /demo_items/);
    assert.equal(await server.stop('SIGTERM'), 0);
  });

  test('invalid configuration exits 1 and names every bad variable', async () => {
    await assert.rejects(
      startServerProcess({ SLUICE_PORT: 'x', DATABASE_URL: 'nope' }, 30_000),
      (error: Error) =>
        /exited with 1/.test(error.message) &&
        /SLUICE_PORT/.test(error.message) &&
        /DATABASE_URL/.test(error.message),
    );
  });
});
