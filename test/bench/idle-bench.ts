import http from 'node:http';
import type { TestPostgres } from '@sluice/harness';
import {
  forEachConcurrently,
  log,
  rssKb,
  scaled,
  sleep,
  type BenchConfig,
} from './bench-support.js';
import { removeStorage, startBenchSluice, waitUntilHealthy } from './bench-sluice.js';
import { catchUpToEnd } from './live-clients.js';
import { createLongPoller, type LongPoller } from './long-pollers.js';

const TABLE = 'bench_idle';
/**
 * File descriptors the server keeps for itself (stdio, its Postgres connections, shape logs,
 * epoll): one process may not open more than its limit, and the bench cannot raise it.
 */
const SERVER_OWN_FDS = 200;

export interface IdleResult {
  /** Long-polls held at once, idle (scaled; capped below the descriptor limit). */
  held: number;
  /** Asked for before the cap. */
  wanted: number;
  rssBeforeMb: number | undefined;
  rssHeldMb: number | undefined;
  kbPerHeld: number | undefined;
}

/**
 * Measure 6: the server's memory with 20,000 idle long-polls held on one shape (docs/performance.md).
 * Its RSS is read before the first client connects (the shape built) and with every long-poll
 * held and nothing happening; each client holds one keep-alive connection, as a browser does.
 */
export async function benchIdle(postgres: TestPostgres, config: BenchConfig): Promise<IdleResult> {
  const wanted = scaled(config, 20_000, 100);
  const fdLimit = Number(process.env.BENCH_FD_LIMIT ?? 20_000);
  const held = Math.min(wanted, fdLimit - SERVER_OWN_FDS);
  log(`\n## 6. ${held.toLocaleString('en')} idle long-polls held by one server`);
  if (held < wanted) {
    log(`(${wanted} asked for; the file descriptor limit, ${fdLimit}, holds ${held})`);
  }
  const db = await postgres.createDatabase('bench_idle');
  try {
    await db.query(`CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, note text)`);
    await db.query(`INSERT INTO ${TABLE} SELECT g, 'row' FROM generate_series(1, 100) g`);
    const sluice = await startBenchSluice(db, {
      env: {
        SLUICE_MAX_CONCURRENT_LIVE: String(held + 1_000),
        SLUICE_MAX_LIVE_PER_CLIENT: String(held + 1_000),
        // The longest allowed: few long-polls time out and come back while the measure runs.
        SLUICE_LONG_POLL_TIMEOUT_MS: '40000',
      },
    });
    const agent = new http.Agent({ keepAlive: true });
    let pollers: LongPoller[] = [];
    try {
      await waitUntilHealthy(sluice.baseUrl);
      const { handle, offset } = await catchUpToEnd(sluice.baseUrl, TABLE);
      await sleep(1_000);
      const rssBefore = await rssKb(sluice.pid);
      pollers = Array.from({ length: held }, () =>
        createLongPoller('raw', sluice.baseUrl, TABLE, handle, offset, agent),
      );
      const started = performance.now();
      // Some at a time: a burst of SYNs beyond the listen backlog (`somaxconn`, 4,096 here) is
      // dropped. Connecting must take well under the long-poll timeout, or the first come back.
      await forEachConcurrently(pollers, 100, (poller) => poller.start());
      log(`${held} connected in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      // Every request parked on the server, and the garbage of accepting them collected.
      await sleep(Math.max(2_000, held / 2));
      const failed = pollers.filter((poller) => poller.failure);
      if (failed.length > 0) {
        const first = failed[0]?.failure?.message ?? '';
        throw new Error(`${failed.length} of ${held} long-polls failed; the first: ${first}`);
      }
      const rssHeld = await rssKb(sluice.pid);
      const kbPerHeld =
        rssBefore !== undefined && rssHeld !== undefined ? (rssHeld - rssBefore) / held : undefined;
      const mb = (kb: number | undefined) => (kb === undefined ? undefined : Math.round(kb / 1024));
      log(
        `server RSS ${mb(rssBefore) ?? '?'} MB before them, ${mb(rssHeld) ?? '?'} MB with ${held} held` +
          (kbPerHeld === undefined ? '' : ` (${kbPerHeld.toFixed(1)} kB each)`),
      );
      return { held, wanted, rssBeforeMb: mb(rssBefore), rssHeldMb: mb(rssHeld), kbPerHeld };
    } finally {
      for (const poller of pollers) poller.stop();
      agent.destroy();
      await sluice.stop();
      await removeStorage(sluice.storageDir);
    }
  } finally {
    await db.drop();
  }
}
