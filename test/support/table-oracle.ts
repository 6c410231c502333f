import assert from 'node:assert/strict';
import type { Row } from '@electric-sql/client';
import type { Queryable } from '@sluice/harness';
import type { CountingFollower } from './counting-follower.js';

/**
 * The oracle (docs/testing.md): the follower's rows equal `SELECT` of the table. `items(id int primary
 * key, v int)` is compared as key → v, with the client's parsed int4 values.
 */
export async function assertMatchesTable(
  db: Queryable,
  follower: CountingFollower,
  table = 'items',
): Promise<void> {
  const expected = await selectRows(db, table);
  await follower.waitFor((rows) => sameRows(rows, expected)).catch(() => undefined);
  assert.deepEqual(normalise(follower.rows), expected, 'client rows must equal SELECT in Postgres');
}

async function selectRows(db: Queryable, table: string): Promise<Map<string, number | null>> {
  const { rows } = await db.query<{ id: number; v: number | null }>(
    `SELECT id, v FROM ${table} ORDER BY id`,
  );
  return new Map(rows.map((row) => [`"public"."${table}"/"${row.id}"`, row.v]));
}

function normalise(rows: Map<string, Row>): Map<string, number | null> {
  return new Map(
    [...rows]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, row]) => [key, (row.v as number | null) ?? null]),
  );
}

function sameRows(rows: Map<string, Row>, expected: Map<string, number | null>): boolean {
  if (rows.size !== expected.size) return false;
  for (const [key, v] of expected) if ((rows.get(key)?.v ?? null) !== v) return false;
  return true;
}

/**
 * Writes to `items` until stopped: inserts with increasing ids and updates of earlier rows, each
 * its own transaction. A write that fails because the database is restarting is retried; an
 * insert whose commit outcome is unknown is resolved by looking for the row.
 */
export class Writer {
  nextId = 1;
  committed = 0;
  #stopped = false;
  #paused: Promise<void> | undefined;
  #resume: () => void = () => undefined;
  #idle: () => void = () => undefined;
  readonly done: Promise<void>;

  constructor(
    private readonly db: Queryable,
    options: { pauseMs?: number } = {},
  ) {
    this.done = this.#run(options.pauseMs ?? 5);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#resume();
    await this.done;
  }

  /** Resolves once no write is in flight; writing waits until `resume()`. */
  pause(): Promise<void> {
    const idle = new Promise<void>((resolve) => (this.#idle = resolve));
    this.#paused = new Promise<void>((resolve) => (this.#resume = resolve));
    return idle;
  }

  resume(): void {
    this.#paused = undefined;
    this.#resume();
  }

  async #run(pauseMs: number): Promise<void> {
    while (!this.#stopped) {
      if (this.#paused) {
        this.#idle();
        await this.#paused;
        continue;
      }
      const id = this.nextId;
      const update = id > 10 && id % 3 === 0;
      try {
        if (update) await this.db.query('UPDATE items SET v = v + 1 WHERE id = $1', [id - 7]);
        await this.db.query('INSERT INTO items (id, v) VALUES ($1, $2)', [id, 0]);
        this.nextId++;
        this.committed++;
      } catch {
        // Unknown outcome: if the row exists, the insert committed.
        const exists = await this.db
          .query('SELECT 1 FROM items WHERE id = $1', [id])
          .then((r) => (r.rowCount ?? 0) > 0)
          .catch(() => false);
        if (exists) {
          this.nextId++;
          this.committed++;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }
}
