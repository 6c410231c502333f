import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { lsnToBigInt } from '@sluice/protocol';
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';

/**
 * Baselines for "replicated changes/s": the same WAL read by consumers that do nothing with it.
 * Both start from a slot made before the workload and stop once every change was received.
 */
export interface WalReadResult {
  ms: number;
  changes: number;
  /** LSN of the commit record of the last transaction (a change's `tx` in Sluice offsets). */
  finalCommitLsn: bigint;
  /** End of that commit record (what `global_last_seen_lsn` reaches). */
  finalEndLsn: bigint;
  finalEndLsnText: string;
}

/**
 * pg-logical-replication's `LogicalReplicationService` with its stock `PgoutputPlugin` (values
 * converted by node-postgres parsers) in this process: counts inserts and acknowledges each
 * commit, until `expectedChanges` inserts were received. Timed from the connection attempt.
 */
export async function readWithLibrary(
  connectionString: string,
  slot: string,
  publication: string,
  expectedChanges: number,
): Promise<WalReadResult> {
  const service = new LogicalReplicationService(
    { connectionString },
    { acknowledge: { auto: false, timeoutSeconds: 0 } },
  );
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [publication] });
  const started = performance.now();
  let changes = 0;
  const done = new Promise<WalReadResult>((resolve, reject) => {
    service.on('error', reject);
    service.on('data', (_lsn: string, message: Pgoutput.Message) => {
      if (message.tag === 'insert') {
        changes++;
      } else if (message.tag === 'commit') {
        const end = message.commitEndLsn ?? '0/0';
        void service.acknowledge(end);
        if (changes >= expectedChanges) {
          resolve({
            ms: performance.now() - started,
            changes,
            finalCommitLsn: lsnToBigInt(message.commitLsn ?? '0/0'),
            finalEndLsn: lsnToBigInt(end),
            finalEndLsnText: end,
          });
        }
      }
    });
  });
  // subscribe() settles when the stream ends: before every change arrived, that is a failure.
  const ended = service.subscribe(plugin, slot, '0/0').then(() => {
    throw new Error('replication ended before every change arrived');
  });
  ended.catch(() => undefined); // it also ends (and is ignored) when destroyed below
  try {
    return await withTimeout(Promise.race([done, ended]), 300_000, 'library consumer');
  } finally {
    await service.destroy();
  }
}

/** pg_recvlogical when this machine has one (Debian's postgresql-client), else undefined. */
export function findPgRecvlogical(): string | undefined {
  const fromEnv = process.env.PG_RECVLOGICAL;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : undefined;
  const candidates: string[] = [];
  if (process.env.PG_BIN) candidates.push(join(process.env.PG_BIN, 'pg_recvlogical'));
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = readdirSync(debian).sort((a, b) => Number(b) - Number(a));
    for (const version of versions) candidates.push(join(debian, version, 'bin', 'pg_recvlogical'));
  }
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir) candidates.push(join(dir, 'pg_recvlogical'));
  }
  return candidates.find((file) => existsSync(file));
}

export async function pgRecvlogicalVersion(binary: string): Promise<string> {
  const { stdout } = await promisify(execFile)(binary, ['--version']);
  return stdout.trim();
}

/**
 * `pg_recvlogical --start --endpos=<final commit end>` with pgoutput, writing to /dev/null:
 * the reference the targets in docs/performance.md are stated against. Timed from spawn to exit.
 */
export async function readWithPgRecvlogical(
  binary: string,
  connectionString: string,
  slot: string,
  publication: string,
  endLsn: string,
): Promise<{ ms: number }> {
  const started = performance.now();
  const child = spawn(
    binary,
    [
      `--dbname=${connectionString}`,
      `--slot=${slot}`,
      '--start',
      `--endpos=${endLsn}`,
      '--no-loop',
      '-o',
      'proto_version=1',
      '-o',
      `publication_names=${publication}`,
      '--file=/dev/null',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await withTimeout(
    new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (exitCode) => resolve(exitCode));
    }),
    300_000,
    'pg_recvlogical',
  ).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw error;
  });
  if (code !== 0) throw new Error(`pg_recvlogical exited with ${code}: ${stderr}`);
  return { ms: performance.now() - started };
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
