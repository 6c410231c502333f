import pg from 'pg';
import {
  startCluster,
  type PostgresCluster,
  type StartPostgresOptions,
  type StopMode,
} from '@sluice/local-postgres';
import { createTestDatabase, type QueryTarget, type TestDatabase } from './test-database.js';

/**
 * What a test gets from `startPostgres`: a cluster it may break. With `TEST_DATABASE_URL` set the
 * server is external, so the tools that need to own the process (restart, crash, standby) throw.
 */
export interface TestPostgres extends QueryTarget {
  url: string;
  /** True when the harness owns the server process (restart, crash and standby work). */
  owned: boolean;
  cluster: PostgresCluster | undefined;
  createDatabase(prefix?: string): Promise<TestDatabase>;
  stop(): Promise<void>;
  start(): Promise<void>;
  restart(options?: { mode?: StopMode }): Promise<void>;
  crash(): Promise<void>;
}

export async function startPostgres(options: StartPostgresOptions = {}): Promise<TestPostgres> {
  const external = process.env.TEST_DATABASE_URL;
  if (external) return externalPostgres(external);
  const cluster = await startCluster(options);
  return {
    url: cluster.url,
    owned: true,
    cluster,
    urlFor: (database) => cluster.urlFor(database),
    query: (sql, params, database) => cluster.query(sql, params, database),
    createDatabase: (prefix) => createTestDatabase(cluster, prefix),
    stop: () => cluster.destroy(),
    start: () => cluster.start(),
    restart: (restartOptions) => cluster.restart(restartOptions),
    crash: () => cluster.crash(),
  };
}

function externalPostgres(url: string): TestPostgres {
  const urlFor = (database: string) => {
    const u = new URL(url);
    u.pathname = `/${encodeURIComponent(database)}`;
    return u.toString();
  };
  const notOwned = (what: string) => () =>
    Promise.reject(new Error(`${what} needs a harness-owned cluster; unset TEST_DATABASE_URL`));
  const target: QueryTarget = {
    urlFor,
    async query(sql, params = [], database) {
      const client = new pg.Client({ connectionString: database ? urlFor(database) : url });
      // A server that dies mid-query makes the client emit 'error'; the query rejects anyway.
      client.on('error', () => undefined);
      await client.connect();
      try {
        return await client.query(sql, params);
      } finally {
        await client.end();
      }
    },
  };
  return {
    ...target,
    url,
    owned: false,
    cluster: undefined,
    createDatabase: (prefix) => createTestDatabase(target, prefix),
    stop: () => Promise.resolve(),
    start: notOwned('start'),
    restart: notOwned('restart'),
    crash: notOwned('crash'),
  };
}
