/**
 * Every setting Sluice reads, with its default and parser. `loadConfig` validates them all at
 * once; `docs/configuration.md` documents each, and a test keeps the two in step.
 */
export interface OptionSpec<T> {
  env: string;
  description: string;
  /** Written in the docs; `undefined` means the option is optional and unset by default. */
  default: T | undefined;
  parse(raw: string): T;
}

const integer =
  (min: number, max = Number.MAX_SAFE_INTEGER) =>
  (raw: string): number => {
    if (!/^-?\d+$/.test(raw.trim())) throw new Error(`must be an integer, got "${raw}"`);
    const value = Number(raw);
    if (value < min || value > max)
      throw new Error(`must be between ${min} and ${max}, got ${value}`);
    return value;
  };

const text = (raw: string): string => {
  if (raw.trim() === '') throw new Error('must not be empty');
  return raw;
};

const postgresUrl = (raw: string): string => {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error('must be a URL such as postgres://user:password@host:5432/db');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new Error(`must use the postgres:// scheme, got "${url.protocol}"`);
  }
  return raw;
};

const logLevel = (raw: string): string => {
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  if (!levels.includes(raw)) throw new Error(`must be one of ${levels.join(', ')}, got "${raw}"`);
  return raw;
};

function option<T>(spec: OptionSpec<T>): OptionSpec<T> {
  return spec;
}

export const CONFIG_OPTIONS = {
  databaseUrl: option({
    env: 'DATABASE_URL',
    description:
      'Postgres to serve. Unset: Sluice starts an embedded Postgres under `SLUICE_DATA_DIR` with a demo table (development only).',
    default: undefined,
    parse: postgresUrl,
  }),
  host: option({
    env: 'SLUICE_HOST',
    description: 'Address the HTTP server listens on. Use `0.0.0.0` in containers.',
    default: '127.0.0.1',
    parse: text,
  }),
  port: option({
    env: 'SLUICE_PORT',
    description: 'HTTP port (0 picks a free one).',
    default: 3000,
    parse: integer(0, 65535),
  }),
  dataDir: option({
    env: 'SLUICE_DATA_DIR',
    description:
      'Folder for local state: the embedded Postgres cluster (when `DATABASE_URL` is unset).',
    default: '.sluice',
    parse: text,
  }),
  logLevel: option({
    env: 'SLUICE_LOG_LEVEL',
    description: 'pino log level: fatal, error, warn, info, debug, trace or silent.',
    default: 'info',
    parse: logLevel,
  }),
};

type Options = typeof CONFIG_OPTIONS;
type ValueOf<S> = S extends OptionSpec<infer T> ? T : never;

/** The validated configuration: every option with a default is always present. */
export type Config = {
  readonly [K in keyof Options]: Options[K]['default'] extends undefined
    ? ValueOf<Options[K]> | undefined
    : ValueOf<Options[K]>;
};
