import type { TestDatabase } from '@sluice/harness';

/**
 * The environment of a Sluice server process of `db` that keeps its shape logs in the Redis at
 * `redisUrl` (keys prefixed with the database's slot name, so tests sharing a Redis never meet),
 * its own storage folder and port, short long-polls and quick replication retries. Several
 * servers given the same `db` and Redis share one slot and one storage: one writes, the others
 * read (docs/operations.md, "Several servers").
 */
export function redisServerEnv(
  db: TestDatabase,
  redisUrl: string,
  storageDir: string,
  port: number | string,
): Record<string, string> {
  return {
    DATABASE_URL: db.url,
    SLUICE_PORT: String(port),
    SLUICE_STORAGE_DIR: storageDir,
    SLUICE_SLOT_NAME: db.slotName,
    SLUICE_PUBLICATION_NAME: db.publicationName,
    SLUICE_LONG_POLL_TIMEOUT_MS: '2000',
    SLUICE_REPLICATION_RETRY_MIN_MS: '100',
    SLUICE_LOG_LEVEL: 'warn',
    SLUICE_STORAGE: 'redis',
    SLUICE_REDIS_URL: redisUrl,
    SLUICE_REDIS_KEY_PREFIX: db.slotName,
  };
}
