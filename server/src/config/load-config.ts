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
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({ ...values, ...overrides }) as Config;
}
