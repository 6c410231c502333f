import { randomBytes } from 'node:crypto';
import type pg from 'pg';

/** Anything that runs a statement: a cluster (its `postgres` database) or a test database. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params?: unknown[],
  ): Promise<pg.QueryResult<R>>;
}

/** A cluster that can run a statement in any of its databases. */
export interface QueryTarget extends Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params?: unknown[],
    database?: string,
  ): Promise<pg.QueryResult<R>>;
  urlFor(database: string): string;
}

/** A fresh database with its own slot and publication names, for one test or test file. */
export interface TestDatabase extends Queryable {
  name: string;
  url: string;
  slotName: string;
  publicationName: string;
  /** Drops the database's replication slots first (Postgres refuses otherwise), then it. */
  drop(): Promise<void>;
}

export async function createTestDatabase(target: QueryTarget, prefix = 't'): Promise<TestDatabase> {
  const id = randomBytes(5).toString('hex');
  const name = `${prefix}_${id}`;
  await target.query(`CREATE DATABASE ${name}`);
  return {
    name,
    url: target.urlFor(name),
    slotName: `sluice_slot_${id}`,
    publicationName: `sluice_pub_${id}`,
    query: (sql, params) => target.query(sql, params, name),
    async drop() {
      await dropSlotsOf(target, name);
      await target.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

/** Terminates the walsenders holding the database's slots, then drops the slots. */
export async function dropSlotsOf(target: QueryTarget, database: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const { rows } = await target.query<{ slot_name: string; active_pid: number | null }>(
      'SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = $1',
      [database],
    );
    if (rows.length === 0) return;
    for (const row of rows) {
      if (row.active_pid !== null) {
        await target.query('SELECT pg_terminate_backend($1)', [row.active_pid]);
        continue;
      }
      await target
        .query('SELECT pg_drop_replication_slot($1)', [row.slot_name])
        .catch(() => undefined); // re-acquired or dropped meanwhile: the next pass sees it
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`could not drop the replication slots of database ${database}`);
}
