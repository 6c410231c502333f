import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PATHS } from '@sluice/protocol';
import type { TestDatabase } from '@sluice/harness';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { fetchStatus, waitForStatus } from '../support/server-status.js';
import { httpRequest, sleep } from './bench-support.js';

/**
 * A Sluice server for the bench: the real entry point (`server/dist/main.js`, built by `npm run
 * bench` first) in its own process, so the server has an event loop of its own, as in production,
 * and the bench's clients do not run on it. Stopping keeps the storage folder unless told otherwise,
 * so the same shapes can be reopened by a later process.
 */
export interface BenchSluice {
  baseUrl: string;
  storageDir: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

export interface BenchSluiceOptions {
  /** Reuse the shape logs of an earlier process; a new temp folder otherwise. */
  storageDir?: string;
  /** Extra SLUICE_* variables (strings, as in the environment). */
  env?: Record<string, string>;
}

const running = new Set<ServerProcess>();
process.once('exit', () => {
  // A bench that crashed must not leave servers behind.
  for (const server of running) server.child.kill('SIGKILL');
});

export async function startBenchSluice(
  db: TestDatabase,
  options: BenchSluiceOptions = {},
): Promise<BenchSluice> {
  const storageDir = options.storageDir ?? (await mkdtemp(join(tmpdir(), 'sluice-bench-')));
  const server = await startServerProcess(
    {
      DATABASE_URL: db.url,
      SLUICE_HOST: '127.0.0.1',
      SLUICE_PORT: '0',
      SLUICE_DATA_DIR: storageDir,
      SLUICE_STORAGE_DIR: storageDir,
      SLUICE_SLOT_NAME: db.slotName,
      SLUICE_PUBLICATION_NAME: db.publicationName,
      SLUICE_LOG_LEVEL: process.env.BENCH_SLUICE_LOG_LEVEL ?? 'warn',
      SLUICE_ENABLE_SHAPE_DELETE: 'true',
      // For the server alone, e.g. '--import ./test/bench/cpu-profile.mjs' (see that file).
      NODE_OPTIONS: process.env.BENCH_SERVER_NODE_OPTIONS,
      ...options.env,
    },
    undefined,
    // The compiled build, as `npm start` runs it: tsx keeps every closure's name with a call per
    // closure made (measurably slower hot paths, about 1 kB more per held long-poll) and
    // compiles at each start (about 0.4 s).
    true,
  ).catch(async (error: unknown) => {
    if (options.storageDir === undefined) await removeStorage(storageDir);
    throw error;
  });
  running.add(server);
  let stopped: Promise<void> | undefined;
  return {
    baseUrl: server.baseUrl,
    storageDir,
    pid: server.child.pid,
    stop() {
      stopped ??= (async () => {
        const exit = server.stop('SIGTERM');
        const timeout = sleep(30_000).then(() => 'timeout' as const);
        if ((await Promise.race([exit, timeout])) === 'timeout') {
          server.child.kill('SIGKILL');
          await exit;
        }
        running.delete(server);
        const errors = server
          .stdout()
          .split('\n')
          .filter((line) => /"level":(50|60)/.test(line));
        if (errors.length > 0) {
          process.stdout.write(
            `  (server logged ${errors.length} error(s); first: ${errors[0]})\n`,
          );
        }
      })();
      return stopped;
    },
  };
}

export async function removeStorage(storageDir: string): Promise<void> {
  await rm(storageDir, { recursive: true, force: true });
}

/** Waits until `/v1/health` answers 200 (replication streaming). */
export async function waitUntilHealthy(baseUrl: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await httpRequest(`${baseUrl}${PATHS.health}`).catch(() => undefined);
    if (response?.status === 200) return;
    if (Date.now() > deadline) throw new Error(`Sluice not healthy after ${timeoutMs} ms`);
    await sleep(20);
  }
}

/**
 * When Sluice's walsender connected (wall clock, ms). Sluice's catch-up is timed from there:
 * that includes its connection setup, as the baselines' times include theirs.
 */
export async function walsenderStart(db: TestDatabase): Promise<number> {
  const { rows } = await db.query<{ started: Date }>(
    `SELECT a.backend_start AS started FROM pg_replication_slots s
       JOIN pg_stat_activity a ON a.pid = s.active_pid WHERE s.slot_name = $1`,
    [db.slotName],
  );
  const started = rows[0]?.started;
  if (!started) throw new Error('Sluice has no active walsender');
  return started.getTime();
}

/**
 * `count` servers sharing one Redis storage (`SLUICE_STORAGE=redis`) and one slot: the first is
 * started alone and waited for until live, so it takes the replication lock and writes; the
 * others then start as readers. Resolves once every one is live and names the first as the
 * writer (/v1/status). Each has a storage folder of its own (for what is not in Redis).
 */
export async function startSharedSluices(
  db: TestDatabase,
  count: number,
  options: { redisUrl: string; env?: Record<string, string> },
): Promise<BenchSluice[]> {
  const env = {
    SLUICE_STORAGE: 'redis',
    SLUICE_REDIS_URL: options.redisUrl,
    SLUICE_REDIS_KEY_PREFIX: db.slotName,
    ...options.env,
  };
  const started: BenchSluice[] = [];
  try {
    started.push(await startBenchSluice(db, { env }));
    await waitForStatus(started[0]!.baseUrl, 'live', 60_000);
    const writer = (await fetchStatus(started[0]!.baseUrl)).storage.instance;
    if (writer === null) throw new Error('the first server names no instance (not on Redis?)');
    for (let index = 1; index < count; index++) {
      started.push(await startBenchSluice(db, { env }));
    }
    const deadline = Date.now() + 60_000;
    for (const sluice of started) {
      await waitForStatus(sluice.baseUrl, 'live', 60_000);
      // A reader learns who writes from the writer's announcements; until then it names none.
      while ((await fetchStatus(sluice.baseUrl)).storage.writer !== writer) {
        if (Date.now() > deadline) throw new Error(`${sluice.baseUrl} never named ${writer}`);
        await sleep(50);
      }
    }
    return started;
  } catch (error) {
    await stopAndRemove(started);
    throw error;
  }
}

/** Stops the servers together, then removes their storage folders. */
export async function stopAndRemove(sluices: readonly BenchSluice[]): Promise<void> {
  await Promise.all(sluices.map((sluice) => sluice.stop()));
  for (const sluice of sluices) await removeStorage(sluice.storageDir);
}
