// The oracle of the end-to-end tests (docs/testing.md): a client's materialised rows must equal a
// SELECT of the same shape in Postgres. Postgres values are read as text with the session settings
// docs/protocol.md §4 prescribes and parsed the way @electric-sql/client 1.5 parses them
// (node_modules/@electric-sql/client/src/parser.ts): int2/int4/float4/float8 → Number, int8 →
// BigInt, bool → boolean, json/jsonb → JSON.parse, arrays → nested arrays, anything else (numeric,
// timestamps, uuid, bytea, enums, domains, composites…) the raw text. The column types come from
// pg_catalog, not from the server's `electric-schema`, so a wrong header shows up as a mismatch.
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import {
  Shape,
  ShapeStream,
  type Message,
  type Row,
  type ShapeStreamOptions,
} from '@electric-sql/client';
import type { TestDatabase, TestPostgres } from '@sluice/harness';
import pg from 'pg';
import { startSluice, waitUntilLive, type RunningSluice } from './sluice-server.js';

/** What the oracle selects: the real (unquoted) names as pg_catalog stores them. */
export interface ShapeSpec {
  schema?: string;
  table: string;
  /** Projection; all columns when omitted (like the `columns` parameter). */
  columns?: readonly string[];
  /** Extra SQL condition for the oracle only (e.g. rows a changes_only client can know). */
  where?: string;
}

/** docs/protocol.md §4 session settings, as a libpq `options` string. */
const SESSION_OPTIONS = [
  'DateStyle=ISO,\\ DMY',
  'TimeZone=UTC',
  'extra_float_digits=1',
  'IntervalStyle=iso_8601',
  'bytea_output=hex',
]
  .map((setting) => `-c ${setting}`)
  .join(' ');

export const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;

interface ColumnType {
  name: string;
  /** typname, of the element type for arrays. */
  type: string;
  isArray: boolean;
}

/** Reads the shape's rows from Postgres in the client's parsed form, sorted by primary key. */
export async function postgresRows(db: TestDatabase, spec: ShapeSpec): Promise<Row[]> {
  const client = new pg.Client({ connectionString: db.url, options: SESSION_OPTIONS });
  await client.connect();
  try {
    const schema = spec.schema ?? 'public';
    const { rows: catalog } = await client.query<{
      name: string;
      type: string;
      is_array: boolean;
      pk: number | null;
    }>(
      `SELECT a.attname::text AS name,
              COALESCE(e.typname, t.typname)::text AS type,
              e.oid IS NOT NULL AS is_array,
              array_position(i.indkey, a.attnum)::int4 AS pk
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_type t ON t.oid = a.atttypid
         LEFT JOIN pg_type e ON e.oid = t.typelem AND e.typarray = t.oid
         LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
        WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum`,
      [schema, spec.table],
    );
    assert.ok(catalog.length > 0, `no table ${schema}.${spec.table}`);
    const columns: ColumnType[] = catalog
      .filter((c) => spec.columns === undefined || spec.columns.includes(c.name))
      .map((c) => ({ name: c.name, type: c.type, isArray: c.is_array }));
    const keys = catalog
      .filter((c) => c.pk !== null)
      .sort((a, b) => (a.pk ?? 0) - (b.pk ?? 0))
      .map((c) => c.name);
    const select = columns.map((c) => `${quoteIdent(c.name)}::text`).join(', ');
    const where = spec.where ? ` WHERE ${spec.where}` : '';
    const result = await client.query<(string | null)[]>({
      text: `SELECT ${select} FROM ${quoteIdent(schema)}.${quoteIdent(spec.table)}${where}`,
      rowMode: 'array',
    });
    const rows = result.rows.map((values) => {
      const row: Row = {};
      columns.forEach((column, i) => (row[column.name] = parseColumn(column, values[i] ?? null)));
      return row;
    });
    return sortRows(rows, keys);
  } finally {
    await client.end();
  }
}

/** The client's parse of one value (parser.ts `defaultParser` and `pgArrayParser`). */
export function parseColumn(
  column: Pick<ColumnType, 'type' | 'isArray'>,
  text: string | null,
): Row[string] {
  if (text === null) return null;
  return column.isArray ? parseArray(text, column.type) : parseScalar(text, column.type);
}

function parseScalar(text: string, type: string): Row[string] {
  switch (type) {
    case 'int2':
    case 'int4':
    case 'float4':
    case 'float8':
      return Number(text);
    case 'int8':
      return BigInt(text);
    case 'bool':
      return text === 'true' || text === 't';
    case 'json':
    case 'jsonb':
      return JSON.parse(text) as Row[string];
    default:
      return text;
  }
}

/** A Postgres array literal (`{a,"b \"c\"",NULL,{1,2}}`), written independently of the client's. */
function parseArray(text: string, type: string): Row[string] {
  let pos = 0;
  const parseLevel = (): Row[string][] => {
    assert.equal(text[pos], '{', `array literal ${text}`);
    pos++;
    const items: Row[string][] = [];
    if (text[pos] === '}') {
      pos++;
      return items;
    }
    for (;;) {
      if (text[pos] === '{') items.push(parseLevel());
      else if (text[pos] === '"') {
        let value = '';
        pos++;
        while (pos < text.length && text[pos] !== '"') {
          if (text[pos] === '\\') pos++;
          value += text[pos];
          pos++;
        }
        pos++;
        items.push(parseScalar(value, type));
      } else {
        let end = pos;
        while (end < text.length && text[end] !== ',' && text[end] !== '}') end++;
        const raw = text.slice(pos, end);
        pos = end;
        items.push(raw === 'NULL' ? null : parseScalar(raw, type));
      }
      if (text[pos] === ',') pos++;
      else {
        assert.equal(text[pos], '}', `array literal ${text}`);
        pos++;
        return items;
      }
    }
  };
  return parseLevel();
}

/** A value as text for sorting and messages: bigint and nested values included. */
export const valueText = (value: Row[string] | undefined): string =>
  typeof value === 'object' && value !== null
    ? JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
    : String(value);

const sortKey = (row: Row, keys: readonly string[]): string =>
  JSON.stringify(keys.map((k) => valueText(row[k])));

/** Rows in a stable order: by the given key columns, compared as text. */
export function sortRows(rows: readonly Row[], keys: readonly string[]): Row[] {
  return [...rows].sort((a, b) => {
    const ka = sortKey(a, keys);
    const kb = sortKey(b, keys);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
}

async function primaryKeyOf(db: TestDatabase, spec: ShapeSpec): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT a.attname::text AS name
       FROM pg_index i
       JOIN pg_class c ON c.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
      WHERE i.indisprimary AND n.nspname = $1 AND c.relname = $2
      ORDER BY array_position(i.indkey, a.attnum)`,
    [spec.schema ?? 'public', spec.table],
  );
  return rows.map((r) => r.name);
}

/**
 * THE ORACLE. Waits (up to `timeoutMs`) until the client's rows equal the shape's rows in
 * Postgres, as multisets: a duplicated key on the client (snapshot and replication keys that
 * differ) is a mismatch too. On timeout it fails with the diff. `rows` defaults to the Shape's
 * current rows; pass a function to check some other materialisation.
 */
export async function assertMatchesPostgres(
  db: TestDatabase,
  spec: ShapeSpec,
  client: Shape | (() => readonly Row[]),
  timeoutMs = 20_000,
): Promise<void> {
  const keys = await primaryKeyOf(db, spec);
  assert.ok(keys.length > 0, 'the oracle needs a primary key');
  const current = typeof client === 'function' ? client : () => client.currentRows;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (client instanceof Shape && client.error) throw client.error;
    const expected = await postgresRows(db, spec);
    const actual = sortRows(current(), keys);
    if (isDeepStrictEqual(actual, expected)) return;
    if (Date.now() > deadline) {
      assert.deepEqual(actual, expected, 'client rows differ from Postgres');
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Resolves with the Shape's rows once `predicate` holds for them (checked now, on every
 * notification and every 50 ms); rejects on a client error or after `timeoutMs`.
 */
export function waitForRows(
  shape: Shape,
  predicate: (rows: Row[]) => boolean,
  timeoutMs = 20_000,
): Promise<Row[]> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const error = shape.error || shape.stream.error;
      if (error) {
        return finish(() =>
          reject(error instanceof Error ? error : new Error('client error', { cause: error })),
        );
      }
      const rows = shape.currentRows;
      if (predicate(rows)) finish(() => resolve(rows));
    };
    const finish = (action: () => void) => {
      clearInterval(interval);
      clearTimeout(timer);
      unsubscribe();
      action();
    };
    const unsubscribe = shape.subscribe(check);
    const interval = setInterval(check, 50);
    const timer = setTimeout(
      () =>
        finish(() =>
          reject(
            new Error(
              `waitForRows timed out after ${timeoutMs} ms with ${shape.currentRows.length} rows`,
            ),
          ),
        ),
      timeoutMs,
    );
    check();
  });
}

/** A ShapeStream plus Shape that `close()` really stops (unsubscribing alone keeps polling). */
export interface OpenShape {
  stream: ShapeStream;
  shape: Shape;
  close: () => void;
}

export function openShape(url: string, options: ShapeOptions): OpenShape {
  const controller = new AbortController();
  const stream = new ShapeStream({ ...options, url, signal: controller.signal });
  const shape = new Shape(stream);
  return {
    stream,
    shape,
    close: () => {
      controller.abort();
      shape.unsubscribeAll();
      stream.unsubscribeAll();
    },
  };
}

let timersPatched = false;

/**
 * @electric-sql/client 1.5 keeps a module-level `upToDateTracker` whose throttled save
 * (up-to-date-tracker.ts, `scheduleSave`) arms a non-unref'd timer of up to 60 s on every
 * up-to-date after the first; in Node it only writes to a localStorage that does not exist, yet it
 * keeps a test process alive for up to a minute after its last test. This unrefs that one timer
 * (recognised by its callback) and leaves every other timer of the process alone.
 */
export function unrefClientSaveTimers(): void {
  if (timersPatched) return;
  timersPatched = true;
  const original = globalThis.setTimeout;
  const patched = ((callback: (...args: unknown[]) => void, delay?: number, ...args: unknown[]) => {
    const timer = original(callback, delay, ...args);
    if (typeof callback === 'function' && callback.toString().includes('pendingSaveTimer')) {
      timer.unref();
    }
    return timer;
  }) as typeof globalThis.setTimeout;
  globalThis.setTimeout = Object.assign(patched, { __promisify__: original.__promisify__ });
}

export type ShapeOptions = Omit<ShapeStreamOptions, 'url' | 'signal'>;

export interface SluiceFixture {
  db: TestDatabase;
  sluice: RunningSluice;
  /** `${baseUrl}/v1/shape` */
  url: string;
  /** Opens a client stream that the fixture closes at the end. */
  open: (options: ShapeOptions) => OpenShape;
}

/**
 * A fresh database (set up with `sql`, several statements allowed) and a Sluice on it for one
 * test; streams, server and database are always torn down, whatever the test does.
 */
export async function withSluice(
  postgres: TestPostgres,
  sql: string,
  body: (fixture: SluiceFixture) => Promise<void>,
  overrides: Parameters<typeof startSluice>[1] = {},
): Promise<void> {
  const db = await postgres.createDatabase();
  const shapes: OpenShape[] = [];
  let sluice: RunningSluice | undefined;
  try {
    await db.query(sql);
    sluice = await startSluice(db, overrides);
    await waitUntilLive(sluice.baseUrl);
    const url = `${sluice.baseUrl}/v1/shape`;
    await body({
      db,
      sluice,
      url,
      open: (options) => {
        const opened = openShape(url, options);
        shapes.push(opened);
        return opened;
      },
    });
  } finally {
    for (const shape of shapes) shape.close();
    await sluice?.close();
    await db.drop();
  }
}

/** Every message a stream delivers from now on, in order. */
export function recordMessages(opened: OpenShape): Message[] {
  const messages: Message[] = [];
  opened.stream.subscribe((batch) => {
    messages.push(...batch);
  });
  return messages;
}
