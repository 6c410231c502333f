import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REDIS_INSTALL_HINT =
  'install it with `apt-get install redis-server` (or set REDIS_SERVER_PATH)';

/** `REDIS_SERVER_PATH` when set (and only it), else Debian's redis-server. */
export function findRedisServer(): string | undefined {
  const wanted = process.env.REDIS_SERVER_PATH;
  const candidates = wanted ? [wanted] : ['/usr/bin/redis-server', '/usr/local/bin/redis-server'];
  return candidates.find((path) => existsSync(path));
}

/**
 * Why Redis tests cannot run here (undefined when they can). With `SLUICE_REQUIRE_REDIS=1` (CI)
 * a missing redis-server throws instead, so a broken CI image fails rather than skipping.
 */
export function redisSkipReason(): string | undefined {
  if (findRedisServer()) return undefined;
  const reason = `no redis-server found: ${REDIS_INSTALL_HINT}`;
  if (process.env.SLUICE_REQUIRE_REDIS === '1')
    throw new Error(`SLUICE_REQUIRE_REDIS=1 but ${reason}`);
  return reason;
}

export interface TestRedis {
  /** `redis://127.0.0.1:<port>`. */
  url: string;
  port: number;
  /** The data folder (AOF files). */
  dir: string;
  /** Starts the server again after stop() or kill(), on the same port and data. */
  start(): Promise<void>;
  /** SHUTDOWN-like stop (SIGTERM: the AOF is fsynced). */
  stop(): Promise<void>;
  /** SIGKILL: a crash; what `appendfsync everysec` had not synced is lost. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  /** Stops the server and deletes its folder. */
  destroy(): Promise<void>;
}

export interface StartRedisOptions {
  /** `always` makes every acknowledged write survive a SIGKILL (at a cost: docs/operations.md). */
  appendfsync?: 'always' | 'everysec';
  /** Further redis-server options, e.g. `['--cluster-enabled', 'yes']`. */
  args?: string[];
  /**
   * Writes a config file into the data folder and returns its path, which is passed first (a
   * Sentinel must have one: it rewrites it). Written again on every start.
   */
  configFile?: (dir: string) => Promise<string>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Whether the server answers PING with PONG (not LOADING: it is then still reading its AOF). */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => {
      reply += data.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

/**
 * Runs Debian's redis-server (`findRedisServer()`) on a free loopback port with its data in a
 * temp folder: AOF on (`appendfsync everysec` unless told otherwise), no
 * RDB snapshots, protected mode, bound to 127.0.0.1 only. Runs as whoever runs the tests (Redis
 * needs no user of its own, root included). The server dies with the test process.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<TestRedis> {
  const appendfsync = options.appendfsync ?? 'everysec';
  const binary = findRedisServer();
  if (!binary) throw new Error(`no redis-server found: ${REDIS_INSTALL_HINT}`);
  const dir = await mkdtemp(join(tmpdir(), 'sluice-redis-'));
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const killOnExit = () => child?.kill('SIGKILL');
  process.on('exit', killOnExit);

  const launch = async (port: number): Promise<boolean> => {
    const logFile = join(dir, 'redis.log');
    await rm(logFile, { force: true });
    // One argument per option: redis-server reads `--name value` pairs like config lines.
    const config = options.configFile ? [await options.configFile(dir)] : [];
    const args = [
      ...config,
      ...['--port', String(port), '--bind', '127.0.0.1', '--protected-mode', 'yes'],
      ...['--dir', dir, '--logfile', logFile, '--daemonize', 'no'],
      ...['--appendonly', 'yes', '--appendfsync', appendfsync, '--save', ''],
      ...(options.args ?? []),
    ];
    const started = spawn(binary, args, { stdio: 'ignore' });
    child = started;
    exited = new Promise((resolve) => started.once('exit', () => resolve()));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (started.exitCode !== null || started.signalCode !== null) {
        const log = await readFile(logFile, 'utf8').catch(() => '');
        if (log.includes('Address already in use')) return false;
        throw new Error(`redis-server exited with ${started.exitCode}: ${log}`);
      }
      if (await answersPing(port)) return true;
      if (Date.now() > deadline) {
        started.kill('SIGKILL');
        throw new Error(`redis-server did not answer in 15 s: ${await readFile(logFile, 'utf8')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const halt = async (signal: NodeJS.Signals) => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };

  let port = 0;
  try {
    for (let attempt = 0; port === 0 && attempt < 5; attempt++) {
      const candidate = await freePort();
      if (await launch(candidate)) port = candidate;
    }
    if (port === 0) throw new Error('redis-server found no free port in 5 attempts');
  } catch (error) {
    await halt('SIGKILL');
    process.off('exit', killOnExit);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  const start = async () => {
    // The port was ours a moment ago; a test that loses it to another process fails loudly.
    if (!(await launch(port))) throw new Error(`port ${port} was taken while Redis was down`);
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    start,
    stop: () => halt('SIGTERM'),
    kill: () => halt('SIGKILL'),
    async restart() {
      await halt('SIGTERM');
      await start();
    },
    async destroy() {
      await halt('SIGKILL');
      process.off('exit', killOnExit);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface TestRedisSentinel {
  /** The master the Sentinel monitors at first. */
  master: TestRedis;
  /** Its replica, with `replica: true`: the Sentinel promotes it on a failover. */
  replica: TestRedis | undefined;
  sentinel: TestRedis;
  /** The master group name. */
  name: string;
  sentinels: { host: string; port: number }[];
  destroy(): Promise<void>;
}

export interface StartRedisSentinelOptions {
  /** The master group name (default `mymaster`). */
  name?: string;
  /** Also start a replica of the master, so that `SENTINEL FAILOVER <name>` can promote it. */
  replica?: boolean;
}

/**
 * One master (and a replica when asked) and one Sentinel monitoring it as `name`, quorum 1 and
 * short timeouts so a failover takes a few seconds.
 */
export async function startRedisSentinel(
  options: StartRedisSentinelOptions = {},
): Promise<TestRedisSentinel> {
  const name = options.name ?? 'mymaster';
  const started: TestRedis[] = [];
  const destroy = async () => {
    for (const server of started.reverse()) await server.destroy();
  };
  try {
    const master = await startRedis({ args: ['--repl-diskless-sync-delay', '0'] });
    started.push(master);
    const replica = options.replica
      ? await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] })
      : undefined;
    if (replica) {
      started.push(replica);
      // A failover needs a replica that has synced (the master starts its diskless sync at
      // once: `--repl-diskless-sync-delay 0`).
      await waitForReply(
        redisCli(),
        replica.port,
        ['info', 'replication'],
        'master_link_status:up',
        Date.now() + 15_000,
      );
    }
    const sentinel = await startRedis({
      args: ['--sentinel'],
      configFile: async (dir) => {
        const file = join(dir, 'sentinel.conf');
        const lines = [
          `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`,
          `sentinel down-after-milliseconds ${name} 1000`,
          `sentinel failover-timeout ${name} 5000`,
        ];
        await writeFile(file, lines.join('\n') + '\n');
        return file;
      },
    });
    started.push(sentinel);
    return {
      master,
      replica,
      sentinel,
      name,
      sentinels: [{ host: '127.0.0.1', port: sentinel.port }],
      destroy,
    };
  } catch (error) {
    await destroy();
    throw error;
  }
}

export interface TestRedisCluster {
  nodes: TestRedis[];
  /** `redis://` URL of the first node (a seed: the client discovers the others). */
  url: string;
  destroy(): Promise<void>;
}

/** A Redis Cluster of `masters` nodes (at least 3, no replicas), every slot assigned and ok. */
export async function startRedisCluster(masters = 3): Promise<TestRedisCluster> {
  const cli = redisCli();
  const nodes: TestRedis[] = [];
  const destroy = async () => {
    await Promise.all(nodes.map((node) => node.destroy()));
  };
  try {
    for (let i = 0; i < masters; i++) {
      nodes.push(
        await startRedis({
          args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'],
        }),
      );
    }
    const addresses = nodes.map((node) => `127.0.0.1:${node.port}`);
    await run(cli, ['--cluster', 'create', ...addresses, '--cluster-yes']);
    // `create` returns once slots are assigned; every node must also see the others' slots.
    const deadline = Date.now() + 15_000;
    for (const node of nodes) {
      await waitForReply(cli, node.port, ['cluster', 'info'], 'cluster_state:ok', deadline);
    }
  } catch (error) {
    await destroy();
    throw error;
  }
  return { nodes, url: nodes[0]!.url, destroy };
}

/** redis-cli, next to the redis-server the tests use. */
function redisCli(): string {
  const binary = findRedisServer();
  if (!binary) throw new Error(`no redis-server found: ${REDIS_INSTALL_HINT}`);
  return join(binary, '..', 'redis-cli');
}

/** Asks the server at `port` until its reply contains `wanted`; throws at `deadline`. */
async function waitForReply(
  cli: string,
  port: number,
  command: string[],
  wanted: string,
  deadline: number,
): Promise<void> {
  for (;;) {
    const reply = await run(cli, ['-p', String(port), ...command]);
    if (reply.includes(wanted)) return;
    if (Date.now() > deadline) {
      throw new Error(`${command.join(' ')} on port ${port}: no ${wanted} in time: ${reply}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')}: ${error.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}
