import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, type Stats } from 'node:fs';
import { chmod, cp, lstat, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The unprivileged OS user that runs Postgres when this process is root. */
export interface PostgresUser {
  uid: number;
  gid: number;
  name: string;
}

const resolved = new Map<string, Promise<string>>();

/**
 * The folder `user` runs the binaries of `bin` from: `bin` itself when it can execute them there.
 * A checkout in a folder only root may enter (a clone under /root, a mkdtemp folder) puts the
 * embedded binaries out of that user's reach (`spawn …/initdb EACCES`); then the installation
 * around `bin` is copied to a root-owned folder under the temp dir, which `user` can reach (as it
 * reaches the clusters there), and reused for as long as the installation is unchanged.
 */
export function reachableBinDir(bin: string, user: PostgresUser): Promise<string> {
  let dir = resolved.get(bin);
  if (!dir) {
    dir = findReachableBinDir(bin, user);
    resolved.set(bin, dir);
    // A failure is reported once, not remembered: the next cluster tries again.
    dir.catch(() => resolved.delete(bin));
  }
  return dir;
}

async function findReachableBinDir(bin: string, user: PostgresUser): Promise<string> {
  if (await canExecute(bin, user)) return bin;
  // Postgres finds its libraries and share files relative to its own binary, so the folder above
  // `bin` moves as a whole; refuse anything that is not visibly an installation (say PG_BIN=~/bin).
  const installation = dirname(bin);
  const sample = ['share/postgresql', 'share'].map((share) =>
    join(installation, share, 'postgresql.conf.sample'),
  );
  if (!sample.some((file) => existsSync(file))) {
    throw new Error(
      `the ${user.name} user cannot execute the Postgres binaries in ${bin} (they, or a folder above them, are closed to that user), and ${installation} is not a Postgres installation (no postgresql.conf.sample under share) that could be copied somewhere it can reach; set PG_BIN to a folder it can reach`,
    );
  }
  const copy = await stagedCopy(installation);
  const copiedBin = join(copy, basename(bin));
  if (!(await canExecute(copiedBin, user))) {
    throw new Error(
      `the ${user.name} user can execute neither the Postgres binaries in ${bin} nor their copy in ${copiedBin}; make the temp dir (${tmpdir()}, from TMPDIR) reachable to it, or set PG_BIN to a folder it can reach`,
    );
  }
  return copiedBin;
}

/** Whether `user` may run the server binary (the one loading the most libraries). */
async function canExecute(bin: string, user: PostgresUser): Promise<boolean> {
  try {
    await execFileAsync(join(bin, 'postgres'), ['--version'], {
      uid: user.uid,
      gid: user.gid,
      cwd: '/',
      timeout: 10_000,
    });
    return true;
  } catch (error) {
    // Only an unreachable binary is this module's concern; any other failure is left for the
    // tools to report with their own output.
    return (error as NodeJS.ErrnoException).code !== 'EACCES';
  }
}

/**
 * Copies `installation` to `<tmp>/sluice-postgres-bin-<where>-<what>`, named after its path and
 * a digest of its files' sizes, times and inodes (so a reinstall gets a new copy and an unchanged
 * installation keeps the old one), unless that copy is already there. Copies of earlier
 * installations at the same path are removed, so only one 60 MB copy per checkout remains.
 */
async function stagedCopy(installation: string): Promise<string> {
  const entries = await listTree(installation);
  const where = digest(installation);
  const what = digest(
    entries
      .map(({ path, stats }) =>
        [path, stats.size, stats.mtimeMs, stats.ctimeMs, stats.ino, stats.mode].join(':'),
      )
      .join('\n'),
  );
  const prefix = `sluice-postgres-bin-${where}-`;
  const target = join(tmpdir(), `${prefix}${what}`);
  const existing = await lstat(target).catch(() => undefined);
  if (existing && isOwn(existing)) return target;
  // The temp dir is world-writable: whatever else holds the name is not trusted, and goes.
  if (existing) await rm(target, { recursive: true, force: true });

  // Copied under a temporary name and renamed into place whole, so a process that crashes or
  // races another one never leaves a half copy under the final name.
  const staging = await mkdtemp(join(tmpdir(), `${prefix}staging-`));
  try {
    await cp(installation, staging, { recursive: true, verbatimSymlinks: true });
    await makeReadable(staging);
    await rename(staging, target);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    if (await isOwnCopy(target)) return target; // another process finished first
    throw error;
  }
  await removeEarlierCopies(prefix, target);
  return target;
}

async function isOwnCopy(path: string): Promise<boolean> {
  const stats = await lstat(path).catch(() => undefined);
  return !!stats && isOwn(stats);
}

/** Root-owned, writable by root only: a copy this function (in this or another process) made. */
function isOwn(stats: Stats): boolean {
  return stats.isDirectory() && stats.uid === 0 && (stats.mode & 0o022) === 0;
}

/** Readable (and, for programs, executable) by everyone, writable by root only. */
async function makeReadable(root: string): Promise<void> {
  await chmod(root, 0o755);
  for (const { path, stats } of await listTree(root)) {
    if (stats.isSymbolicLink()) continue;
    const mode = stats.isDirectory() || stats.mode & 0o100 ? 0o755 : 0o644;
    await chmod(join(root, path), mode);
  }
}

async function removeEarlierCopies(prefix: string, keep: string): Promise<void> {
  const finished = new RegExp(`^${prefix}[0-9a-f]{12}$`);
  for (const name of await readdir(tmpdir())) {
    const path = join(tmpdir(), name);
    if (finished.test(name) && path !== keep && (await isOwnCopy(path))) {
      await rm(path, { recursive: true, force: true });
    }
  }
}

/** Every entry under `root` (paths relative to it, symbolic links not followed), in a stable order. */
async function listTree(root: string, under = ''): Promise<{ path: string; stats: Stats }[]> {
  const names = (await readdir(join(root, under))).sort();
  const entries: { path: string; stats: Stats }[] = [];
  for (const name of names) {
    const path = join(under, name);
    const stats = await lstat(join(root, path));
    entries.push({ path, stats });
    if (stats.isDirectory()) entries.push(...(await listTree(root, path)));
  }
  return entries;
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}
