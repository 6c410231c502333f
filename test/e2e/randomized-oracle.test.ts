// The oracle after a randomized workload (docs/testing.md): several writers run a seeded mix of
// inserts, updates (primary-key changes and TOASTed values included), deletes and multi-table
// transactions, some rolled back, while official-client followers join before, during and after
// the writes (one with replica=full, one with a column projection, some with where clauses),
// @sluice/client followers do the same over its WebSocket (all sharing one socket: docs/protocol.md
// §12), and a raw HTTP follower walks the protocol by hand. At the end every follower equals
// SELECT of its shape, every change arrived exactly once, and nothing was refetched.
// ORACLE_SEED=<n> replays a seed's statements (their interleaving across writers still varies).
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { after, before, test } from 'node:test';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import type { Row } from '@sluice/client';
import pg from 'pg';
import { ChangeAudit } from '../support/change-audit.js';
import { CountingFollower } from '../support/counting-follower.js';
import { RawFollower } from '../support/raw-shape.js';
import { assertMatchesPostgres, type ShapeSpec } from '../support/shape-oracle.js';
import { SluiceFollower } from '../support/sluice-follower.js';
import { startSluice, waitUntilLive, type RunningSluice } from '../support/sluice-server.js';
import { tapWebSockets } from '../support/web-socket-tap.js';

const SEED = process.env.ORACLE_SEED ? Number(process.env.ORACLE_SEED) : randomInt(2 ** 31);
const WRITERS = 4;
/** Statements over all writers (a transaction holds one to six). */
const OPERATIONS = 1_500;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** mulberry32: small, fast and good enough to drive a workload. */
class Random {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
}

const SCHEMA = `
  CREATE TABLE t_int (id int PRIMARY KEY, label text, n int);
  CREATE TABLE t_comp (a int, b text, v int NOT NULL, meta jsonb, PRIMARY KEY (a, b));
  CREATE TABLE t_text (k text PRIMARY KEY, body text, n int, flag boolean, tags text[]);`;

/** Key parts with the characters keys must escape or quote: '/', '"', "'", '\', spaces. */
const B_VALUES = ['x', 'y/z', 'q"uote', "it's", '', 'sp ace', '/', 'back\\slash'];
const PREFIXES = ['k/', 'a"b/', "it's/", '//', '"q"/', 'back\\/', 'ünï/', 'sp ace/'];
const TEXTS = ['plain', 'with "double" quotes', "it's", 'back\\slash', 'line\nbreak\ttab'];
const MORE_TEXTS = ['ünïcödé ✓ 🚀', '', '{curly,comma}', 'NULL', 'a/b/c'];

function text(rng: Random): string | null {
  if (rng.chance(0.1)) return null;
  // Out-of-line TOAST: large and (hex from the PRNG) barely compressible.
  if (rng.chance(0.04)) {
    const length = 3_000 + rng.int(3_000);
    let hex = '';
    while (hex.length < length) hex += rng.int(2 ** 30).toString(16);
    return hex;
  }
  return rng.chance(0.4) ? `w${rng.int(100_000)}` : rng.pick([...TEXTS, ...MORE_TEXTS]);
}

const int = (rng: Random): number | null => (rng.chance(0.1) ? null : rng.int(2_001) - 1_000);

interface Table {
  name: string;
  keyColumns: string[];
  /** The keys writer `w` owns (writers never share keys, so each knows which of its rows exist). */
  keys(w: number): unknown[][];
  /** Random values for the non-key columns. */
  values(rng: Random): Record<string, unknown>;
}

const TABLES: Table[] = [
  {
    name: 't_int',
    keyColumns: ['id'],
    keys: (w) => Array.from({ length: 100 }, (_, i) => [w + WRITERS * i]),
    values: (rng) => ({ label: text(rng), n: int(rng) }),
  },
  {
    name: 't_comp',
    keyColumns: ['a', 'b'],
    keys: (w) =>
      Array.from({ length: 8 }, (_, i) => B_VALUES.map((b) => [w + WRITERS * i, b])).flat(),
    values: (rng) => ({
      v: rng.int(1_000),
      meta: rng.chance(0.15)
        ? null
        : JSON.stringify({ n: rng.int(100), s: text(rng), list: [rng.int(9), 'x'] }),
    }),
  },
  {
    name: 't_text',
    keyColumns: ['k'],
    keys: (w) => PREFIXES.flatMap((p) => Array.from({ length: 8 }, (_, i) => [`${p}${w}.${i}`])),
    values: (rng) => ({
      body: text(rng),
      n: int(rng),
      flag: rng.chance(0.2) ? null : rng.chance(0.5),
      tags: rng.chance(0.2)
        ? null
        : Array.from({ length: rng.int(4) }, () => rng.pick(['a', 'b,c', 'q"x', 'NULL', '', null])),
    }),
  },
];

interface Statement {
  kind: string;
  sql: string;
  params: unknown[];
}

/** A transaction being built: statements plus the key sets they would leave behind. */
class Draft {
  readonly statements: Statement[] = [];
  readonly keys: Map<string, Set<string>>;
  constructor(committed: Map<string, Set<string>>) {
    this.keys = new Map([...committed].map(([name, set]) => [name, new Set(set)]));
  }
}

const quote = (name: string) => `"${name}"`;

/** One writer: its own connection, PRNG and key partition; statements built from what exists. */
class WriterLoop {
  readonly stats = new Map<string, number>();
  committed = 0;
  rolledBack = 0;
  statements = 0;
  #keys = new Map<string, Set<string>>();
  readonly #client: pg.Client;
  readonly #rng: Random;

  constructor(
    db: TestDatabase,
    readonly w: number,
  ) {
    this.#client = new pg.Client({ connectionString: db.url });
    this.#rng = new Random(SEED + 7_919 * (w + 1));
    for (const table of TABLES) this.#keys.set(table.name, new Set());
  }

  async connect(): Promise<void> {
    await this.#client.connect();
    // Lock waits between writers can deadlock; find out fast (superuser only, so best effort).
    await this.#client.query("SET deadlock_timeout = '50ms'").catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.#client.end().catch(() => undefined);
  }

  /** Initial rows, before any follower starts. */
  async seed(): Promise<void> {
    const draft = new Draft(this.#keys);
    for (const table of TABLES) for (let i = 0; i < 10; i++) this.#insert(draft, table);
    await this.#commit(draft, false);
    this.statements = this.committed = 0;
    this.stats.clear();
  }

  /** Runs transactions until `budget` statements have been issued. */
  async run(budget: number): Promise<void> {
    const rng = this.#rng;
    while (this.statements < budget) {
      const draft = new Draft(this.#keys);
      const roll = rng.next();
      if (roll < 0.05) {
        this.#bulk(draft);
      } else {
        const count = roll < 0.6 ? 1 : 2 + rng.int(5);
        for (let i = 0; i < count; i++) this.#statement(draft, rng.pick(TABLES));
      }
      await this.#commit(draft, rng.chance(0.05));
      // Bursts and pauses, so live long-polls see both batches and single transactions.
      if (rng.chance(0.3)) await sleep(rng.int(300));
    }
  }

  async #commit(draft: Draft, rollback: boolean): Promise<void> {
    this.statements += draft.statements.length;
    try {
      await this.#client.query('BEGIN');
      for (const { kind, sql, params } of draft.statements) {
        await this.#client.query(sql, params);
        this.stats.set(kind, (this.stats.get(kind) ?? 0) + 1);
      }
      await this.#client.query(rollback ? 'ROLLBACK' : 'COMMIT');
    } catch (error) {
      await this.#client.query('ROLLBACK');
      // Writers touch each other's rows only in bulk updates: lock waits may deadlock.
      const code = (error as { code?: string }).code;
      if (code !== '40P01' && code !== '40001') throw error;
      rollback = true;
    }
    if (rollback) {
      this.rolledBack++;
      return;
    }
    this.committed++;
    this.#keys = draft.keys;
  }

  #statement(draft: Draft, table: Table): void {
    const roll = this.#rng.next();
    const held = draft.keys.get(table.name)?.size ?? 0;
    if (roll < 0.25 || held === 0) this.#insert(draft, table);
    else if (roll < 0.3) for (let i = 0; i < 3; i++) this.#insert(draft, table);
    else if (roll < 0.5) this.#update(draft, table);
    else if (roll < 0.55) this.#upsert(draft, table);
    else if (roll < 0.6) this.#noOpUpdate(draft, table);
    else if (roll < 0.72) this.#changeKey(draft, table);
    else if (roll < 0.87) this.#delete(draft, table, this.#existing(draft, table));
    else if (roll < 0.9) this.#missing(draft, table);
    else if (roll < 0.95) {
      const key = this.#existing(draft, table);
      this.#delete(draft, table, key);
      this.#insert(draft, table, key);
    } else {
      // Inserted, updated and deleted in one transaction: never visible to anyone.
      const key = this.#insert(draft, table);
      if (key) {
        this.#update(draft, table, key);
        this.#delete(draft, table, key);
      }
    }
  }

  #existing(draft: Draft, table: Table): unknown[] | undefined {
    const set = draft.keys.get(table.name);
    if (!set || set.size === 0) return undefined;
    return JSON.parse(this.#rng.pick([...set])) as unknown[];
  }

  #free(draft: Draft, table: Table): unknown[] | undefined {
    const set = draft.keys.get(table.name);
    const free = table.keys(this.w).filter((key) => !set?.has(JSON.stringify(key)));
    return free.length === 0 ? undefined : this.#rng.pick(free);
  }

  #where(table: Table, key: unknown[], params: unknown[]): string {
    return table.keyColumns
      .map((column, i) => {
        params.push(key[i]);
        return `${quote(column)} = $${params.length}`;
      })
      .join(' AND ');
  }

  #insert(draft: Draft, table: Table, key = this.#free(draft, table)): unknown[] | undefined {
    if (!key) return undefined;
    const values = table.values(this.#rng);
    const columns = [...table.keyColumns, ...Object.keys(values)];
    const params = [...key, ...Object.values(values)];
    const placeholders = params.map((_, i) => `$${i + 1}`).join(', ');
    draft.statements.push({
      kind: 'insert',
      sql: `INSERT INTO ${table.name} (${columns.map(quote).join(', ')}) VALUES (${placeholders})`,
      params,
    });
    draft.keys.get(table.name)?.add(JSON.stringify(key));
    return key;
  }

  #update(draft: Draft, table: Table, key = this.#existing(draft, table)): void {
    if (!key) return;
    const entries = Object.entries(table.values(this.#rng)).filter(() => this.#rng.chance(0.6));
    const params: unknown[] = [];
    const set = entries.length > 0 ? entries : Object.entries(table.values(this.#rng)).slice(0, 1);
    const assignments = set.map(([column, value]) => {
      params.push(value);
      return `${quote(column)} = $${params.length}`;
    });
    const where = this.#where(table, key, params);
    const sql = `UPDATE ${table.name} SET ${assignments.join(', ')} WHERE ${where}`;
    draft.statements.push({ kind: 'update', sql, params });
  }

  #upsert(draft: Draft, table: Table): void {
    const key = this.#existing(draft, table);
    if (!key) return;
    const values = table.values(this.#rng);
    const columns = [...table.keyColumns, ...Object.keys(values)];
    const params = [...key, ...Object.values(values)];
    const placeholders = params.map((_, i) => `$${i + 1}`).join(', ');
    const updates = Object.keys(values).map((c) => `${quote(c)} = EXCLUDED.${quote(c)}`);
    draft.statements.push({
      kind: 'upsert',
      sql: `INSERT INTO ${table.name} (${columns.map(quote).join(', ')}) VALUES (${placeholders})
            ON CONFLICT (${table.keyColumns.map(quote).join(', ')}) DO UPDATE SET ${updates.join(', ')}`,
      params,
    });
  }

  #noOpUpdate(draft: Draft, table: Table): void {
    const key = this.#existing(draft, table);
    if (!key) return;
    const params: unknown[] = [];
    const column = quote(Object.keys(table.values(this.#rng))[0] ?? '');
    const sql = `UPDATE ${table.name} SET ${column} = ${column} WHERE ${this.#where(table, key, params)}`;
    draft.statements.push({ kind: 'no-op update', sql, params });
  }

  #changeKey(draft: Draft, table: Table): void {
    const from = this.#existing(draft, table);
    const to = this.#free(draft, table);
    if (!from || !to) return;
    const params: unknown[] = [];
    const assignments = table.keyColumns.map((column, i) => {
      params.push(to[i]);
      return `${quote(column)} = $${params.length}`;
    });
    if (this.#rng.chance(0.5)) {
      const [column, value] = Object.entries(table.values(this.#rng))[0] ?? [];
      params.push(value);
      assignments.push(`${quote(column ?? '')} = $${params.length}`);
    }
    const where = this.#where(table, from, params);
    const sql = `UPDATE ${table.name} SET ${assignments.join(', ')} WHERE ${where}`;
    draft.statements.push({ kind: 'key change', sql, params });
    const set = draft.keys.get(table.name);
    set?.delete(JSON.stringify(from));
    set?.add(JSON.stringify(to));
  }

  #delete(draft: Draft, table: Table, key: unknown[] | undefined): void {
    if (!key) return;
    const params: unknown[] = [];
    const sql = `DELETE FROM ${table.name} WHERE ${this.#where(table, key, params)}`;
    draft.statements.push({ kind: 'delete', sql, params });
    draft.keys.get(table.name)?.delete(JSON.stringify(key));
  }

  /** A statement that matches no row (a key nobody holds). */
  #missing(draft: Draft, table: Table): void {
    const key = this.#free(draft, table);
    if (!key) return;
    const params: unknown[] = [];
    const where = this.#where(table, key, params);
    draft.statements.push({
      kind: 'no-match',
      sql: `DELETE FROM ${table.name} WHERE ${where}`,
      params,
    });
  }

  /** One statement across every writer's rows (non-key columns only, so key sets stay exact). */
  #bulk(draft: Draft): void {
    const rng = this.#rng;
    const statement = rng.pick([
      { sql: 'UPDATE t_int SET n = coalesce(n, 0) + 1 WHERE id % 11 = $1', params: [rng.int(11)] },
      { sql: 'UPDATE t_comp SET v = v + 1 WHERE a % 5 = $1', params: [rng.int(5)] },
      {
        sql: 'UPDATE t_text SET flag = NOT coalesce(flag, false) WHERE k LIKE $1',
        params: [`%.${rng.int(8)}`],
      },
    ]);
    draft.statements.push({ kind: 'bulk update', ...statement });
  }
}

/** A follower of either client, as the end of the test checks it. */
interface Followed {
  name: string;
  spec: ShapeSpec;
  rows: () => Row[];
  errors: unknown[];
  mustRefetches: () => number;
  audit: ChangeAudit;
  close: () => void;
  /** Sluice's WebSocket followers: how many long-polls they made (none allowed). */
  longPolls?: () => number;
}

const sockets = tapWebSockets();

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

test(`randomized workload: every follower equals Postgres (ORACLE_SEED=${SEED})`, async (t) => {
  t.diagnostic(`ORACLE_SEED=${SEED}`);
  console.log(`randomized oracle: ORACLE_SEED=${SEED}`);
  const db = await postgres.createDatabase();
  const writers = Array.from({ length: WRITERS }, (_, w) => new WriterLoop(db, w));
  const followed: Followed[] = [];
  let raw: RawFollower | undefined;
  let sluice: RunningSluice | undefined;
  try {
    await db.query(SCHEMA);
    for (const writer of writers) await writer.connect();
    for (const writer of writers) await writer.seed();
    // Small chunks, so followers that join late read many of them.
    sluice = await startSluice(db, { chunkBytes: 16_384 });
    await waitUntilLive(sluice.baseUrl);
    const url = `${sluice.baseUrl}/v1/shape`;
    // A spec's `where` is both the shape's where clause and the oracle's condition.
    const shapeParams = (spec: ShapeSpec, replica?: 'full') => ({
      table: spec.table,
      ...(spec.columns ? { columns: [...spec.columns] } : {}),
      ...(replica ? { replica } : {}),
      ...(spec.where ? { where: spec.where } : {}),
    });
    const follow = (name: string, spec: ShapeSpec, replica?: 'full') => {
      const follower = new CountingFollower(url, shapeParams(spec, replica));
      followed.push({
        name,
        spec,
        rows: () => [...follower.rows.values()],
        errors: follower.errors,
        mustRefetches: () => follower.mustRefetches,
        audit: ChangeAudit.of(follower.stream),
        close: () => follower.close(),
      });
    };
    const followOverSocket = (name: string, spec: ShapeSpec, replica?: 'full') => {
      const follower = new SluiceFollower(url, {
        params: shapeParams(spec, replica),
        liveTransport: 'websocket',
        webSocket: sockets.WebSocket,
      });
      followed.push({
        name: `${name}, @sluice/client over its WebSocket`,
        spec,
        rows: () => follower.rows,
        errors: follower.errors,
        mustRefetches: () => follower.mustRefetches,
        audit: follower.audit,
        close: () => follower.close(),
        longPolls: () => follower.longPolls,
      });
    };
    const converge = async (entries: Followed[]) => {
      for (const { spec, rows } of entries) {
        await assertMatchesPostgres(db, spec, rows, 60_000);
      }
    };

    follow('t_int, before the writes', { table: 't_int' });
    follow('t_comp, before the writes', { table: 't_comp' });
    follow('t_int (id, n) projection, before the writes', { table: 't_int', columns: ['id', 'n'] });
    // Filtered shapes: bulk updates of n and b move rows in and out of them.
    follow('t_int where n % 3 = 1, before the writes', { table: 't_int', where: 'n % 3 = 1' });
    follow('t_int where id IN (…), before the writes', {
      table: 't_int',
      where: 'id IN (1, 2, 3, 5, 8, 13, 21, 34, 55, 89)',
    });
    followOverSocket('t_int, before the writes', { table: 't_int' });
    followOverSocket('t_int where n % 3 = 1, before the writes', {
      table: 't_int',
      where: 'n % 3 = 1',
    });
    raw = new RawFollower(sluice.baseUrl, { table: 't_text' });
    await converge(followed);

    const budget = Math.ceil(OPERATIONS / WRITERS);
    const progress = () => writers.reduce((sum, writer) => sum + writer.statements, 0);
    let writing = true;
    const running = Promise.all(writers.map((writer) => writer.run(budget))).finally(
      () => (writing = false),
    );
    const joinAt = async (statements: number) => {
      while (writing && progress() < statements) await sleep(20);
    };
    await joinAt(OPERATIONS / 3);
    follow('t_text, during the writes', { table: 't_text' });
    followOverSocket('t_text, during the writes', { table: 't_text' });
    await joinAt((2 * OPERATIONS) / 3);
    follow('t_comp replica=full, during the writes', { table: 't_comp' }, 'full');
    // Selective enough to move rows in and out, wide enough (about 14 % of t_comp's writes) that
    // the last third of the workload always brings it changes.
    follow(
      't_comp where, replica=full, during the writes',
      { table: 't_comp', where: `v BETWEEN 2 AND 400 AND (b LIKE '%/%' OR meta IS NULL)` },
      'full',
    );
    follow('t_text where, during the writes', {
      table: 't_text',
      where: `flag IS NOT FALSE AND coalesce(n, 0) < 50 AND NOT tags @> '{a}'`,
    });
    followOverSocket(
      't_comp where, replica=full, during the writes',
      { table: 't_comp', where: `v BETWEEN 2 AND 400 AND (b LIKE '%/%' OR meta IS NULL)` },
      'full',
    );
    await running;
    follow('t_int, after the writes', { table: 't_int' });

    const stats = new Map<string, number>();
    for (const writer of writers) {
      for (const [kind, count] of writer.stats) stats.set(kind, (stats.get(kind) ?? 0) + count);
    }
    const committed = writers.reduce((sum, writer) => sum + writer.committed, 0);
    const rolledBack = writers.reduce((sum, writer) => sum + writer.rolledBack, 0);
    t.diagnostic(
      `${progress()} statements, ${committed} commits, ${rolledBack} rollbacks: ${JSON.stringify(Object.fromEntries(stats))}`,
    );
    assert.ok(progress() >= OPERATIONS, 'the whole workload ran');
    for (const kind of ['insert', 'update', 'key change', 'delete', 'upsert', 'bulk update']) {
      assert.ok((stats.get(kind) ?? 0) > 0, `the workload committed some ${kind}`);
    }

    await converge(followed);
    const rawFollower = raw;
    await assertMatchesPostgres(
      db,
      { table: 't_text' },
      () => [...rawFollower.rows.values()],
      60_000,
    );
    for (const { name, errors, mustRefetches, audit, longPolls } of followed) {
      assert.deepEqual(errors, [], `${name}: no client error`);
      assert.equal(mustRefetches(), 0, `${name}: no must-refetch`);
      assert.deepEqual(audit.anomalies, [], `${name}: every change exactly once`);
      assert.ok(audit.changes > 0, `${name}: changes arrived`);
      if (longPolls) assert.equal(longPolls(), 0, `${name}: never long-polled`);
    }
    // One socket carried every WebSocket follower's live changes.
    assert.equal(sockets.opened.length, 1, 'the WebSocket followers shared one socket');
    assert.ok(sockets.changes > 0, 'changes arrived over the socket');
    assert.equal(raw.error, undefined, 'raw follower: no error');
    assert.equal(raw.mustRefetches, 0, 'raw follower: no 409');
    assert.deepEqual(raw.audit.anomalies, [], 'raw follower: every change exactly once');
    assert.ok(raw.upToDates > 1, 'raw follower: followed live');
  } finally {
    for (const { close } of followed) close();
    await raw?.close();
    for (const writer of writers) await writer.close();
    await sluice?.close();
    await db.drop();
  }
});
