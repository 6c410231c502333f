// Debian's nginx running the shipped server/deploy/nginx.conf in front of a test Sluice, so tests
// exercise the very cache configuration operators deploy. Only the upstream address, the listen
// port and the cache path are substituted; everything else is the file as shipped.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SHIPPED_CONFIG = fileURLToPath(new URL('../../server/deploy/nginx.conf', import.meta.url));

export const NGINX_INSTALL_HINT = 'install it with `apt-get install nginx` (or set NGINX_PATH)';

/**
 * `NGINX_PATH` when set (and only it), else Debian's nginx (in /usr/sbin, which a non-root PATH
 * often lacks).
 */
export function findNginx(): string | undefined {
  const wanted = process.env.NGINX_PATH;
  const candidates = wanted ? [wanted] : ['/usr/sbin/nginx', '/usr/bin/nginx'];
  return candidates.find((path) => existsSync(path));
}

export interface NginxCache {
  /** `http://127.0.0.1:<port>`: Sluice through the cache. */
  baseUrl: string;
  /** Lines of the access log so far: `<upstream cache status> <request uri>` each. */
  accessLog(): Promise<string[]>;
  stop(): Promise<void>;
}

/** Replaces `from` in `text`, failing loudly if the shipped file no longer has it exactly once. */
function substitute(text: string, from: string, to: string): string {
  assert.equal(text.split(from).length, 2, `server/deploy/nginx.conf must contain "${from}" once`);
  return text.replace(from, () => to);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * The shipped site config, with only the upstream servers (one `server` line each, in the shipped
 * `upstream sluice` block), the listen address and the cache path changed.
 */
async function siteConfig(upstreams: string[], port: number, cacheDir: string): Promise<string> {
  let site = await readFile(SHIPPED_CONFIG, 'utf8');
  const servers = upstreams.map((upstream) => `server ${upstream};`).join('\n  ');
  site = substitute(site, 'server sluice:3000;', servers);
  site = substitute(site, 'listen 8080;', `listen 127.0.0.1:${port};`);
  return substitute(site, '/var/cache/nginx/sluice', cacheDir);
}

/** A main config keeping everything nginx writes in `dir`, and logging each cache status. */
function mainConfig(dir: string): string {
  return [
    process.getuid?.() === 0 ? 'user root;' : '',
    'daemon off;',
    'worker_processes 1;',
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} warn;`,
    'events { worker_connections 1024; }',
    'http {',
    '  log_format cache "$upstream_cache_status $request_uri";',
    `  access_log ${join(dir, 'access.log')} cache;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(
      (kind) => `  ${kind}_temp_path ${join(dir, kind)};`,
    ),
    `  include ${join(dir, 'sluice.conf')};`,
    '}',
  ].join('\n');
}

/**
 * Runs nginx on the configs in `dir` and waits until it answers on `baseUrl`. Only a response
 * with the `X-Cache-Status` header the shipped config adds to every answer counts: the port was
 * free a moment ago, but another test's server may have taken it since. Resolves with undefined
 * when nginx could not bind the port, so that the caller tries another.
 */
async function launch(
  nginx: string,
  dir: string,
  baseUrl: string,
): Promise<(() => Promise<void>) | undefined> {
  const errorLog = join(dir, 'error.log');
  // A previous attempt's complaint about its port is not this one's.
  await rm(errorLog, { force: true });
  const child = spawn(nginx, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', errorLog], {
    stdio: 'ignore',
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // nginx does not die with its parent: a test process that crashes must not leave it running.
  const killOnExit = () => child.kill('SIGTERM');
  process.once('exit', killOnExit);
  const stop = async () => {
    process.off('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  const log = () => readFile(errorLog, 'utf8').catch(() => '');
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      const text = await log();
      if (text.includes('Address already in use')) return undefined;
      throw new Error(`nginx exited with ${child.exitCode}: ${text}`);
    }
    const ours = await fetch(`${baseUrl}/v1/health`).then(
      async (response) => {
        await response.arrayBuffer();
        return response.headers.has('x-cache-status');
      },
      () => false,
    );
    if (ours) return stop;
    if ((await log()).includes('Address already in use')) {
      await stop();
      return undefined;
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`nginx did not answer in 10 s: ${await log()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Starts nginx (`nginx` from `findNginx()`) with the shipped site config pointed at `upstream`
 * (`host:port`, or several: servers sharing one Redis storage, balanced by nginx), listening on a free loopback port, with its cache, temp files, pid and logs in a
 * temp folder. As root, workers run as root too (`user root;`) so they can write that folder.
 */
export async function startNginxCache(
  nginx: string,
  upstream: string | string[],
): Promise<NginxCache> {
  const upstreams = typeof upstream === 'string' ? [upstream] : upstream;
  assert.ok(upstreams.length > 0, 'nginx needs at least one upstream');
  const dir = await mkdtemp(join(tmpdir(), 'sluice-nginx-'));
  try {
    await writeFile(join(dir, 'nginx.conf'), mainConfig(dir));
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort();
      await writeFile(
        join(dir, 'sluice.conf'),
        await siteConfig(upstreams, port, join(dir, 'cache')),
      );
      const baseUrl = `http://127.0.0.1:${port}`;
      const stopNginx = await launch(nginx, dir, baseUrl);
      if (!stopNginx) continue;
      return {
        baseUrl,
        async accessLog() {
          const text = await readFile(join(dir, 'access.log'), 'utf8').catch(() => '');
          return text.split('\n').filter((line) => line !== '');
        },
        async stop() {
          await stopNginx();
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    throw new Error('nginx found no free port in 5 attempts');
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
