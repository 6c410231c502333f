// `npm run bench`: Sluice against baselines measured in the same run (docs/performance.md, "Targets"); see
// docs/performance.md. Not part of `npm test`; nothing here asserts a time. Environment:
//   BENCH_RUNS=5                   runs per measure (the report shows medians)
//   BENCH_SCALE=1                  data sizes (0.1 for a quick run)
//   BENCH_ONLY=snapshot,changes,latency,routing,startup,shapes,idle,scaleout,subquery (scaleout: Redis)
//   BENCH_FD_LIMIT=20000           the open-file limit (`ulimit -n`): the idle measure stays below it
//   PG_RECVLOGICAL=/path           pg_recvlogical for the WAL baseline (else searched for)
//   BENCH_LATENCY_CLIENT=raw|http  long-poll clients: minimal raw HTTP (default) or node:http
//   BENCH_LATENCY_SETUPS=websocket:1000,long-poll:1000   only these latency setups (default: all six)
//   BENCH_SLUICE_LOG_LEVEL=warn    the server's log level
//   BENCH_SERVER_NODE_OPTIONS=…    NODE_OPTIONS for the server (see cpu-profile.mjs)
// The run also draws a chart (test/bench/chart.ts): latency against clients, and the throughput
// ratios of snapshot and changes. A run of all three (at any scale; the caption says how it was
// measured) writes docs/performance.svg, the chart the docs show; any other run that has some of
// them writes its chart, with the panels it can fill, to the temp folder, so a partial run never
// replaces the committed chart.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { redisSkipReason, startPostgres, startRedis, type TestPostgres } from '@sluice/harness';
import {
  benchAgent,
  formatMs,
  log,
  machineInfo,
  readBenchConfig,
  type BenchConfig,
} from './bench-support.js';
import { renderChart } from './chart.js';
import { benchChanges } from './changes-bench.js';
import { benchIdleShapes } from './idle-shapes-bench.js';
import { benchIdle } from './idle-bench.js';
import { benchLatency } from './latency-bench.js';
import { benchRouting } from './routing-bench.js';
import { benchScaleout } from './scaleout-bench.js';
import { describeMachine, renderMarkdown, renderTable, type BenchResults } from './report.js';
import { benchSnapshot } from './snapshot-bench.js';
import { benchStartup } from './startup-bench.js';
import { benchSubquery } from './subquery-bench.js';

/** Postgres settings for the bench cluster, on top of the harness's throwaway defaults. */
const POSTGRES_SETTINGS = {
  shared_buffers: '256MB',
  max_wal_size: '8GB',
  checkpoint_timeout: '30min',
};

const CHART_FILE = new URL('../../docs/performance.svg', import.meta.url);

async function main(): Promise<void> {
  const config = readBenchConfig(process.env);
  const started = performance.now();
  const date = new Date();
  log('# Sluice benchmark');
  let postgres: TestPostgres | undefined;
  try {
    postgres = await startPostgres({ name: 'bench', settings: POSTGRES_SETTINGS });
    const machine = await machineInfo(postgres);
    const revision = codeRevision();
    log(`machine: ${describeMachine(machine)}`);
    log(`code: ${revision}`);
    log(
      `runs per measure: ${config.runs} (median reported), scale: ${config.scale}, measures: ${[...config.only].join(', ')}`,
    );
    const loadBefore = loadavg()[0] ?? 0;
    log(`load average (1 min) before: ${loadBefore.toFixed(2)}`);
    if (loadBefore > 1) {
      log('warning: the machine is busy; other processes will skew the figures');
    }
    const results = await runMeasures(postgres, config);
    log(`\n## Summary (${formatMs(performance.now() - started)} in all)\n`);
    log(renderTable(results));
    log('\n## Markdown for docs/performance.md\n');
    log(renderMarkdown(results, machine, config, date, revision));
    const caption =
      `Measured ${date.toISOString().slice(0, 10)} on ${describeMachine(machine)}; code ${revision}; ` +
      `medians of ${config.runs} runs, scale ${config.scale}, load average ${loadBefore.toFixed(2)} before`;
    const chart = renderChart(results, caption);
    if (chart !== undefined) {
      const whole = (['latency', 'snapshot', 'changes'] as const).every((name) =>
        config.only.has(name),
      );
      const file = whole ? fileURLToPath(CHART_FILE) : join(tmpdir(), 'sluice-bench-chart.svg');
      writeFileSync(file, chart);
      log(`\nchart written to ${file}`);
    }
  } finally {
    await postgres?.stop();
    benchAgent.destroy();
  }
}

async function runMeasures(postgres: TestPostgres, config: BenchConfig): Promise<BenchResults> {
  // One measure at a time, each with its own database and its own Sluice process, stopped before
  // the next starts: nothing else decodes WAL or holds a CPU while a measure runs.
  return {
    snapshot: config.only.has('snapshot') ? await benchSnapshot(postgres, config) : undefined,
    changes: config.only.has('changes') ? await benchChanges(postgres, config) : undefined,
    changesRedis: config.only.has('changes')
      ? await onRedis('2. Changes into Redis', (url) =>
          benchChanges(postgres, config, { backend: 'redis', url }),
        )
      : undefined,
    latency: config.only.has('latency') ? await benchLatency(postgres, config) : undefined,
    routing: config.only.has('routing') ? await benchRouting(postgres, config) : undefined,
    startup: config.only.has('startup') ? await benchStartup(postgres, config) : undefined,
    shapes: config.only.has('shapes') ? await benchIdleShapes(postgres, config) : undefined,
    idle: config.only.has('idle') ? await benchIdle(postgres, config) : undefined,
    scaleout: config.only.has('scaleout')
      ? await onRedis('8. Fan-out across instances', (url) => benchScaleout(postgres, config, url))
      : undefined,
    subquery: config.only.has('subquery') ? await benchSubquery(postgres, config) : undefined,
  };
}

/**
 * A measure that needs Redis (Debian's redis-server, AOF with `appendfsync always`: acknowledged
 * writes as durable as the disk log's fdatasync), given a fresh one; skipped, and said so, without
 * it.
 */
async function onRedis<T>(
  title: string,
  measure: (url: string) => Promise<T>,
): Promise<T | undefined> {
  const skip = redisSkipReason();
  if (skip) {
    log(`\n## ${title}: skipped (${skip})`);
    return undefined;
  }
  const redis = await startRedis({ appendfsync: 'always' });
  try {
    return await measure(redis.url);
  } finally {
    await redis.destroy();
  }
}

/** `git describe --always --dirty` of the checkout, so figures can be tied to the code. */
function codeRevision(): string {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty'], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return 'unknown';
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
