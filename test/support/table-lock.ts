import type { TestDatabase } from '@sluice/harness';
import pg from 'pg';

/**
 * Holds `LOCK TABLE … IN ACCESS EXCLUSIVE MODE` on a connection of the test's own, so that
 * snapshots and queries of the table wait, until the returned function releases it.
 */
export async function lockTable(db: TestDatabase, table: string): Promise<() => Promise<void>> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  return async () => {
    await client.query('ROLLBACK');
    await client.end();
  };
}
