import { CONFIG_OPTIONS, type Config, type OptionSpec } from './config-options.js';

/** Raised with every invalid setting listed, so an operator fixes them all in one go. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'SLUICE_ERR_CONFIG_INVALID';

  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
  }
}

/**
 * The only reader of the environment (docs/architecture.md invariant 6): validates every option, reports
 * all problems together and returns a frozen object. `overrides` lets tests and embedders set
 * values without touching `process.env`.
 */
export function loadConfig(
  env: Record<string, string | undefined>,
  overrides: Partial<Config> = {},
): Config {
  const problems: string[] = [];
  const values: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(CONFIG_OPTIONS) as [string, OptionSpec<unknown>][]) {
    const raw = env[spec.env];
    if (raw === undefined || raw === '') {
      values[key] = spec.default;
      continue;
    }
    try {
      values[key] = spec.parse(raw);
    } catch (error) {
      problems.push(`${spec.env} ${(error as Error).message}`);
    }
  }
  const min = values.replicationRetryMinMs as number | undefined;
  const max = values.replicationRetryMaxMs as number | undefined;
  if (min !== undefined && max !== undefined && max < min) {
    problems.push(
      `SLUICE_REPLICATION_RETRY_MAX_MS (${max}) must not be below SLUICE_REPLICATION_RETRY_MIN_MS (${min})`,
    );
  }
  const poolSize = values.dbPoolSize as number | undefined;
  const snapshots = values.maxConcurrentSnapshots as number | undefined;
  // Shape creation must leave connections to catalog and fallback queries.
  if (poolSize !== undefined && snapshots !== undefined && snapshots >= poolSize) {
    problems.push(
      `SLUICE_MAX_CONCURRENT_SNAPSHOTS (${snapshots}) must be below SLUICE_DB_POOL_SIZE (${poolSize})`,
    );
  }
  const statementMs = values.dbStatementTimeoutMs as number | undefined;
  const filteredMs = values.filteredSnapshotTimeoutMs as number | undefined;
  if (statementMs !== undefined && filteredMs !== undefined && filteredMs > statementMs) {
    problems.push(
      `SLUICE_FILTERED_SNAPSHOT_TIMEOUT_MS (${filteredMs}) must not be above SLUICE_DB_STATEMENT_TIMEOUT_MS (${statementMs})`,
    );
  }
  // Asking for protection with no secret to protect with must not leave /metrics open.
  if (values.metricsRequireSecret === true && values.secret === undefined) {
    problems.push('SLUICE_METRICS_REQUIRE_SECRET needs SLUICE_SECRET to be set');
  }
  if (values.storage === 'redis' && values.redisUrl === undefined) {
    problems.push('SLUICE_STORAGE=redis needs SLUICE_REDIS_URL to be set');
  }
  if (values.redisCluster === true && values.redisSentinels !== undefined) {
    problems.push('SLUICE_REDIS_CLUSTER=true and SLUICE_REDIS_SENTINELS exclude each other');
  }
  const heartbeat = values.writerHeartbeatMs as number | undefined;
  const silent = values.writerSilentMs as number | undefined;
  if (heartbeat !== undefined && silent !== undefined && silent <= heartbeat) {
    problems.push(
      `SLUICE_WRITER_SILENT_MS (${silent}) must be above SLUICE_WRITER_HEARTBEAT_MS (${heartbeat})`,
    );
  }
  // A Cluster has only db 0: a URL naming another would silently write elsewhere than meant.
  const db = values.redisUrl === undefined ? '' : new URL(values.redisUrl as string).pathname;
  if (values.redisCluster === true && !['', '/', '/0'].includes(db)) {
    problems.push(`SLUICE_REDIS_CLUSTER=true needs db 0 in SLUICE_REDIS_URL, got "${db.slice(1)}"`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({ ...values, ...overrides }) as Config;
}
