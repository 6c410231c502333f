// Subset snapshots (docs/protocol.md §3.10) with the official @electric-sql/client: fetchSnapshot
// and requestSnapshot over GET (`subset__*`) and POST, log=full and changes_only, where + params +
// order_by + limit + offset pagination, a shape with its own clause, values of many types, the
// SQL TanStack DB generates, writes racing requestSnapshot, and hostile subsets. Every data test
// ends with the oracle: the rows equal the same SELECT in Postgres.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import {
  isChangeMessage,
  ShapeStream,
  type ChangeMessage,
  type Row,
  type SubsetParams,
} from '@electric-sql/client';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import {
  assertMatchesPostgres,
  postgresRows,
  recordMessages,
  sortRows,
  unrefClientSaveTimers,
  valueText,
  withSluice as withPostgresSluice,
  type SluiceFixture,
} from '../support/shape-oracle.js';
import type { startSluice } from '../support/sluice-server.js';
import { sqlOutsideLiterals } from '../support/sql-outside-literals.js';

unrefClientSaveTimers();

let postgres: TestPostgres;
before(async () => {
  // Every statement is logged: hostile subsets must not reach Postgres as SQL.
  postgres = await startPostgres({ settings: { log_statement: 'all' } });
});
after(async () => {
  await postgres.stop();
});

const withSluice = (
  sql: string,
  body: (fixture: SluiceFixture) => Promise<void>,
  overrides: Parameters<typeof startSluice>[1] = {},
) => withPostgresSluice(postgres, sql, body, overrides);

const ITEMS = `CREATE TABLE items (
    id int8 PRIMARY KEY,
    title text,
    "Category" text,
    n int4,
    price numeric(12, 3),
    at timestamptz,
    done bool,
    meta json,
    tags text[],
    big int8,
    secret text
  );
  INSERT INTO items SELECT i, 'item ' || i,
      CASE WHEN i % 3 = 0 THEN 'A' WHEN i % 3 = 1 THEN 'b' END,
      i % 10, i * 1.125, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour',
      i % 2 = 0, json_build_object('i', i, 'nested', json_build_array(i, 'x')),
      ARRAY['t' || (i % 4), 'x'], 9007199254740993 + i, 'hidden'
    FROM generate_series(1, 60) i;`;

type Method = 'GET' | 'POST';
type LogMode = 'full' | 'changes_only';

/** What the oracle selects for a subset: SQL written by the test, never by Sluice. */
interface SubsetSql {
  where: string;
  orderBy?: string;
  limit?: number;
  offset?: number;
  columns?: readonly string[];
}

/** The ids Postgres returns for the subset, in its order. */
async function expectedIds(db: TestDatabase, sql: SubsetSql): Promise<string[]> {
  // Named apart from the column, which ORDER BY must read (not its text).
  const { rows } = await db.query<{ key: string }>(
    `SELECT id::text AS key FROM items WHERE ${sql.where} ORDER BY ${sql.orderBy ?? 'id'}` +
      (sql.limit === undefined ? '' : ` LIMIT ${sql.limit}`) +
      (sql.offset === undefined ? '' : ` OFFSET ${sql.offset}`),
  );
  return rows.map((row) => row.key);
}

/**
 * THE ORACLE for a subset answer: the ids in Postgres' order (when ordered), and every row's
 * values exactly as the client parses the same rows selected from Postgres.
 */
async function assertSubsetMatches(
  db: TestDatabase,
  data: readonly ChangeMessage<Row>[],
  sql: SubsetSql,
): Promise<void> {
  const ids = await expectedIds(db, sql);
  const got = data.map((message) => valueText(message.value.id));
  if (sql.orderBy === undefined) assert.deepEqual([...got].sort(), [...ids].sort());
  else assert.deepEqual(got, ids, `rows in the order of ORDER BY ${sql.orderBy}`);
  const expected = await postgresRows(db, {
    table: 'items',
    columns: sql.columns,
    where: `id = ANY('{${ids.join(',')}}'::int8[])`,
  });
  assert.deepEqual(
    sortRows(
      data.map((message) => message.value),
      ['id'],
    ),
    expected,
  );
  for (const message of data) assert.equal(message.headers.operation, 'insert');
}

/** A stream that is never started: fetchSnapshot alone talks to the server. */
function snapshotStream(
  url: string,
  params: Record<string, string | string[]>,
  log: LogMode,
  method: Method,
): { stream: ShapeStream; close: () => void } {
  const controller = new AbortController();
  const stream = new ShapeStream({
    url,
    params: params as never,
    log,
    subsetMethod: method,
    signal: controller.signal,
  });
  return { stream, close: () => controller.abort() };
}

const isDecimal = (text: unknown) => typeof text === 'string' && /^[0-9]+$/.test(text);

describe('subset snapshots with the official client', () => {
  test('fetchSnapshot pages through a subset: GET and POST, log=full and changes_only', async () => {
    await withSluice(ITEMS, async ({ db, url }) => {
      for (const method of ['GET', 'POST'] as const) {
        for (const log of ['full', 'changes_only'] as const) {
          const { stream, close } = snapshotStream(url, { table: 'items' }, log, method);
          try {
            const where = `n >= $1 AND "Category" IS DISTINCT FROM $2`;
            const sqlWhere = `n >= 3 AND "Category" IS DISTINCT FROM 'b'`;
            const orderBy = `"Category" DESC NULLS LAST, id`;
            const seen: string[] = [];
            for (let page = 0; ; page++) {
              const subset: SubsetParams = {
                where,
                params: { '1': '3', '2': 'b' },
                orderBy,
                limit: 7,
                offset: page * 7,
              };
              const { metadata, data } = await stream.fetchSnapshot(subset);
              await assertSubsetMatches(db, data, {
                where: sqlWhere,
                orderBy,
                limit: 7,
                offset: page * 7,
              });
              for (const field of ['xmin', 'xmax', 'database_lsn'] as const) {
                assert.ok(isDecimal(metadata[field]), `${field} is a decimal string`);
              }
              assert.ok(metadata.xip_list.every(isDecimal));
              assert.ok(Number.isInteger(metadata.snapshot_mark));
              for (const message of data) {
                assert.equal(
                  (message.headers as { snapshot_mark?: number }).snapshot_mark,
                  metadata.snapshot_mark,
                );
              }
              seen.push(...data.map((m) => valueText(m.value.id)));
              if (data.length < 7) break;
            }
            // The pages together are the whole subset, each row once.
            assert.deepEqual(seen, await expectedIds(db, { where: sqlWhere, orderBy }));
          } finally {
            close();
          }
        }
      }
    });
  });

  test('a subset on the request that creates the shape, and on later requests', async () => {
    await withSluice(ITEMS, async ({ db, url }) => {
      // Raw, to see the headers a browser client needs.
      const query = new URLSearchParams({
        table: 'items',
        offset: '-1',
        log: 'changes_only',
        subset__where: 'id <= $1',
        subset__params: JSON.stringify({ '1': '5' }),
      });
      const reply = await fetch(`${url}?${query.toString()}`, {
        headers: { origin: 'https://app.example' },
      });
      assert.equal(reply.status, 200);
      const body = (await reply.json()) as { metadata: unknown; data: ChangeMessage<Row>[] };
      const handle = reply.headers.get('electric-handle');
      assert.ok(handle, 'a new shape was made and named');
      assert.equal(reply.headers.get('electric-offset'), '-1');
      assert.equal(reply.headers.get('electric-snapshot'), 'true');
      assert.equal(reply.headers.get('cache-control'), 'no-cache');
      assert.ok(reply.headers.get('electric-schema'));
      for (const absent of ['etag', 'electric-cursor', 'electric-up-to-date']) {
        assert.equal(reply.headers.get(absent), null, `no ${absent}`);
      }
      const exposed = reply.headers.get('access-control-expose-headers') ?? '';
      assert.match(exposed, /electric-snapshot/);
      assert.equal(body.data.length, 5);

      // The same shape at its current end: the answer names the log's end, where the client's
      // stream goes on from.
      const now = new URLSearchParams({
        table: 'items',
        offset: 'now',
        log: 'changes_only',
        subset__where: 'id = 1',
      });
      const atNow = await fetch(`${url}?${now.toString()}`);
      assert.equal(atNow.status, 200);
      assert.equal(atNow.headers.get('electric-handle'), handle);
      assert.match(atNow.headers.get('electric-offset') ?? '', /^\d+_(\d+|inf)$/);
      // A stale handle is a 409 naming the current one, as for any request.
      const stale = new URLSearchParams({
        table: 'items',
        offset: '0_inf',
        handle: 'not-a-handle',
        log: 'changes_only',
        subset__where: 'id = 1',
      });
      const refused = await fetch(`${url}?${stale.toString()}`);
      assert.equal(refused.status, 409);
      assert.equal(refused.headers.get('electric-handle'), handle);

      // A POST preflight allows the method.
      const preflight = await fetch(url, {
        method: 'OPTIONS',
        headers: {
          origin: 'https://app.example',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'content-type',
        },
      });
      assert.equal(preflight.status, 204);
      assert.match(preflight.headers.get('access-control-allow-methods') ?? '', /POST/);

      // And the official client, POST, on a log=full shape it creates.
      const { stream, close } = snapshotStream(url, { table: 'items' }, 'full', 'POST');
      try {
        const { data } = await stream.fetchSnapshot({ where: 'id > 55' });
        await assertSubsetMatches(db, data, { where: 'id > 55' });
      } finally {
        close();
      }
    });
  });

  test('requestSnapshot as the first request of a changes_only stream (offset -1)', async () => {
    await withSluice(ITEMS, async ({ db, open }) => {
      for (const method of ['GET', 'POST'] as const) {
        const table = `fresh_${method.toLowerCase()}`;
        await db.query(`CREATE TABLE ${table} AS SELECT id, title, n FROM items;
          ALTER TABLE ${table} ADD PRIMARY KEY (id)`);
        // The stream has neither handle nor offset yet: the subset makes its shape.
        const opened = open({ params: { table }, log: 'changes_only', subsetMethod: method });
        const { data } = await opened.stream.requestSnapshot({
          where: 'id <= $1',
          params: { '1': '5' },
        });
        assert.equal(data.length, 5);
        await db.query(`UPDATE ${table} SET title = 'changed' WHERE id IN (3, 40)`);
        await db.query(`INSERT INTO ${table} VALUES (61, 'new', 1)`);
        await db.query(`DELETE FROM ${table} WHERE id = 4`);
        // Rows it loaded, their changes and rows inserted since; an update of a row it never
        // loaded carries only the changed columns (replica=default), which the Shape leaves out.
        await assertMatchesPostgres(db, { table, where: 'id <= 5 OR id = 61' }, opened.shape);
      }
    });
  });

  test('a shape with its own where, params and columns: both clauses apply, only its columns', async () => {
    await withSluice(ITEMS, async ({ db, url }) => {
      const columns = ['id', 'title', 'n', 'tags'];
      for (const method of ['GET', 'POST'] as const) {
        const { stream, close } = snapshotStream(
          url,
          { table: 'items', where: 'n < $1', params: ['5'], columns },
          'changes_only',
          method,
        );
        try {
          const subset = {
            where: `title LIKE $1 OR id = $2`,
            params: { '1': 'item 1%', '2': '44' },
            orderBy: 'n DESC, id',
          };
          const { data } = await stream.fetchSnapshot(subset);
          await assertSubsetMatches(db, data, {
            where: `n < 5 AND (title LIKE 'item 1%' OR id = 44)`,
            orderBy: 'n DESC, id',
            columns,
          });
          for (const message of data) assert.deepEqual(Object.keys(message.value), columns);
          // A column the shape does not serve cannot order it.
          await assert.rejects(stream.fetchSnapshot({ ...subset, orderBy: 'secret' }), (error) => {
            assert.equal((error as { status?: number }).status, 400);
            return true;
          });
        } finally {
          close();
        }
      }
    });
  });

  test('int8 (BigInt), numeric, timestamptz, bool, json and text[] through subsets', async () => {
    await withSluice(ITEMS, async ({ db, url }) => {
      for (const method of ['GET', 'POST'] as const) {
        const { stream, close } = snapshotStream(url, { table: 'items' }, 'full', method);
        try {
          const { data } = await stream.fetchSnapshot({
            where: 'big > $1 AND price >= $2 AND at < $3 AND done = $4 AND $5 = ANY(tags)',
            // Values as TanStack DB serialises them: bigints and dates as strings.
            params: {
              '1': '9007199254741000',
              '2': '9.000',
              '3': '2024-01-02T12:00:00.000Z',
              '4': 'true',
              '5': 't2',
            },
            orderBy: 'big DESC',
          });
          await assertSubsetMatches(db, data, {
            where: `big > 9007199254741000 AND price >= 9 AND at < '2024-01-02T12:00:00Z' AND done AND 't2' = ANY(tags)`,
            orderBy: 'big DESC',
          });
          assert.ok(data.length > 0);
          const first = data[0]!.value;
          assert.equal(typeof first.big, 'bigint');
          assert.equal(typeof first.id, 'bigint');
          assert.equal(typeof first.done, 'boolean');
          assert.equal(typeof first.meta, 'object');
          assert.ok(Array.isArray(first.tags));
          assert.match(valueText(first.price), /^\d+\.\d{3}$/);
        } finally {
          close();
        }
      }
    });
  });

  test('the SQL TanStack DB generates is accepted', async () => {
    await withSluice(ITEMS, async ({ db, url }) => {
      const cases: { subset: SubsetParams; sql: SubsetSql }[] = [
        {
          subset: {
            where: `"Category" = ANY($1) AND "n" >= $2`,
            params: { '1': '{"A","b",NULL}', '2': '4' },
            orderBy: '"title" DESC NULLS FIRST',
            limit: 10,
          },
          sql: {
            where: `"Category" = ANY('{A,b}') AND n >= 4`,
            orderBy: 'title DESC NULLS FIRST',
            limit: 10,
          },
        },
        {
          // As compiled from a structured expression: `in` over bigints, values as strings.
          subset: {
            where: `("id" = ANY($1)) AND (NOT ("big" = $2))`,
            params: { '1': '{"3","5","8","13"}', '2': '9007199254740998' },
          },
          sql: { where: `id IN (3, 8, 13)` },
        },
        {
          subset: {
            where: `(UPPER("title") LIKE $1 OR LOWER("title") ILIKE $2) AND NOT ("done" = $3)`,
            params: { '1': 'ITEM 2%', '2': '%3', '3': 'true' },
          },
          sql: { where: `(upper(title) LIKE 'ITEM 2%' OR lower(title) ILIKE '%3') AND NOT done` },
        },
        {
          subset: {
            where: `LENGTH("title") = $1 AND CONCAT("title", $2, "n") LIKE $3 AND COALESCE("Category", $4) = $4`,
            params: { '1': '7', '2': '-', '3': 'item 1%-%', '4': 'none' },
            orderBy: '"id" ASC',
          },
          sql: {
            where: `length(title) = 7 AND concat(title, '-', n) LIKE 'item 1%-%' AND "Category" IS NULL`,
            orderBy: 'id ASC',
          },
        },
        {
          subset: {
            where: `"Category" IS NULL OR ("n" < $1 AND "n" > $2 AND "n" <= $3 AND "id" IS NOT NULL)`,
            params: { '1': '5', '2': '1', '3': '3' },
            orderBy: '"Category" NULLS FIRST, "id" DESC',
            limit: 5,
            offset: 3,
          },
          sql: {
            where: `"Category" IS NULL OR (n < 5 AND n > 1 AND n <= 3)`,
            orderBy: '"Category" NULLS FIRST, id DESC',
            limit: 5,
            offset: 3,
          },
        },
      ];
      for (const method of ['GET', 'POST'] as const) {
        const { stream, close } = snapshotStream(url, { table: 'items' }, 'changes_only', method);
        try {
          for (const { subset, sql } of cases) {
            const { data } = await stream.fetchSnapshot(subset);
            await assertSubsetMatches(db, data, sql);
          }
        } finally {
          close();
        }
      }
    });
  });

  test('requestSnapshot with writes racing it: the stream ends equal to Postgres, nothing lost or twice', async () => {
    await withSluice(ITEMS, async ({ db, open }) => {
      for (const method of ['GET', 'POST'] as const) {
        // Rows 1..30 are this round's subset; the writer touches only them.
        const opened = open({
          params: { table: 'items', replica: 'full' },
          log: 'changes_only',
          offset: 'now',
          subsetMethod: method,
        });
        const messages = recordMessages(opened);
        let writing = true;
        let writes = 0;
        let snapshot: Awaited<ReturnType<ShapeStream['requestSnapshot']>> | undefined;
        const writer = (async () => {
          while (writing) {
            const id = 1 + (writes % 30);
            if (writes % 5 === 4) {
              await db.query(`DELETE FROM items WHERE id = ${id}`);
              await db.query(
                `INSERT INTO items (id, title, n, tags) VALUES (${id}, 'again ${writes}', ${id % 10}, '{y}')`,
              );
            } else {
              await db.query(`UPDATE items SET title = 'w${writes}', n = n + 1 WHERE id = ${id}`);
            }
            writes++;
          }
        })();
        try {
          await new Promise((resolve) => setTimeout(resolve, 300));
          snapshot = await opened.stream.requestSnapshot({
            where: 'id <= $1',
            params: { '1': '30' },
          });
          assert.ok(snapshot.data.length > 0);
          await new Promise((resolve) => setTimeout(resolve, 500));
        } finally {
          writing = false;
          await writer;
        }
        assert.ok(writes > 5, `the writer ran (${writes} writes)`);
        assert.ok(snapshot);
        await assertMatchesPostgres(db, { table: 'items', where: 'id <= 30' }, opened.shape);
        // Nothing twice: after the snapshot, no change it already held reached the client (the
        // client drops those by txid while its database_lsn is ahead of the stream, so that
        // position must be past every commit the snapshot sees).
        const injected = messages.findIndex(
          (m) => !isChangeMessage(m) && m.headers.control === 'snapshot-end',
        );
        assert.ok(injected >= 0, 'the snapshot was injected into the stream');
        const { xmin, xmax, xip_list } = snapshot.metadata;
        const visible = (xid: number) =>
          BigInt(xid) < BigInt(xmin) ||
          (BigInt(xid) < BigInt(xmax) && !xip_list.map(String).includes(String(xid)));
        const held = new Set(snapshot.data.map((m) => m.key));
        const again = messages
          .slice(injected)
          .filter(isChangeMessage)
          .filter((m) => held.has(m.key) && (m.headers.txids ?? []).some(visible));
        assert.deepEqual(again, [], 'changes the snapshot held were not delivered again');
        opened.close();
      }
    });
  });
});

describe('hostile subsets', () => {
  test('refused with a 400 or 413 naming the problem; nothing reaches Postgres as SQL', async () => {
    const marker = `m${randomBytes(4).toString('hex')}`;
    await withSluice(
      ITEMS,
      async ({ db, url }) => {
        const before = await tableState(db);
        const shape = { table: 'items', offset: '-1' };
        const refusals: [Record<string, string>, string, RegExp][] = [
          [{ subset__order_by: `id; DROP TABLE ${marker}` }, 'order_by', /list of columns/],
          [{ subset__order_by: `(SELECT ${marker})` }, 'order_by', /a subquery/],
          [{ subset__order_by: `pg_sleep(${marker})` }, 'order_by', /a function call/],
          [{ subset__order_by: '1' }, 'order_by', /a constant/],
          [{ subset__order_by: `id + ${marker}` }, 'order_by', /an expression/],
          [{ subset__order_by: `${marker}` }, 'order_by', /unknown column/],
          [{ subset__order_by: `secret, ${marker} DESC` }, 'order_by', /unknown column/],
          [{ subset__order_by: 'meta' }, 'order_by', /cannot order by/],
          [{ subset__where: `id = 1; DROP TABLE ${marker}` }, 'where', /single boolean expression/],
          [{ subset__where: `${marker} = 1` }, 'where', /column/],
          [{ subset__where: `pg_sleep(1) IS NULL` }, 'where', /not allowed/],
          [{ subset__where: `id IN (SELECT ${marker})` }, 'where', /subquer/i],
          [{ subset__where: `${'NOT '.repeat(300)}true` }, 'where', /SLUICE_WHERE_MAX_DEPTH/],
          [{ subset__where: `title = '${'x'.repeat(9_000)}'` }, 'where', /SLUICE_WHERE_MAX_LENGTH/],
          [
            { subset__limit: '100000000', subset__order_by: 'id' },
            'limit',
            /SLUICE_SUBSET_MAX_ROWS/,
          ],
          [{ subset__limit: '-5', subset__order_by: 'id' }, 'limit', /at least 1/],
          [{ subset__limit: '5' }, 'order_by', /is required when limit or offset is given/],
          [{ subset__offset: '5' }, 'order_by', /is required/],
          [
            { subset__where: 'id > 1' },
            'where',
            /matches more than 50 rows \(SLUICE_SUBSET_MAX_ROWS\)/,
          ],
          [
            { subset__where: 'id = $1', subset__params: `{"1":"${marker}"}` },
            'params',
            /bigint|integer/,
          ],
          [{ subset__where: 'id = $1', subset__params: '["1"' }, 'params', /JSON object/],
          [{ subset__where: 'id = 1', subset__params: '{"1":"x"}' }, 'params', /not used/],
        ];
        for (const [subset, field, message] of refusals) {
          const reply = await fetch(
            `${url}?${new URLSearchParams({ ...shape, ...subset }).toString()}`,
          );
          const text = await reply.text();
          assert.equal(
            reply.status,
            400,
            `${JSON.stringify(subset).slice(0, 100)}: ${text.slice(0, 300)}`,
          );
          const body = JSON.parse(text) as { errors: { subset: Record<string, string[]> } };
          const problems = body.errors.subset[field] ?? [];
          assert.ok(
            problems.some((problem) => message.test(problem)),
            `${JSON.stringify(subset).slice(0, 100)}: ${text.slice(0, 300)}`,
          );
          assert.equal(reply.headers.get('cache-control'), 'no-store');
        }

        const post = (body: string, contentType = 'application/json') =>
          fetch(`${url}?${new URLSearchParams(shape).toString()}`, {
            method: 'POST',
            headers: { 'content-type': contentType },
            body,
          });
        const badJson = await post(`{"where": "id = 1", ${marker}`);
        assert.equal(badJson.status, 400);
        assert.match(await badJson.text(), /JSON/);
        const notObject = await post('[1, 2]');
        assert.equal(notObject.status, 400);
        assert.match(await notObject.text(), /must be a JSON object/);
        const tooLarge = await post(JSON.stringify({ where: `title = '${'x'.repeat(70_000)}'` }));
        assert.equal(tooLarge.status, 413);
        assert.match(await tooLarge.text(), /too large/);
        const wrongType = await post('where=id', 'application/x-www-form-urlencoded');
        assert.equal(wrongType.status, 415);
        const nested = await post(
          JSON.stringify({ subset: { order_by: `id; DROP TABLE ${marker}`, limit: 1 } }),
        );
        assert.equal(nested.status, 400);
        const nestedBody = (await nested.json()) as {
          errors: { subset: Record<string, string[]> };
        };
        assert.ok(nestedBody.errors.subset.order_by);
        // Shape parameters and subset fields are reported in one 400.
        const both = await fetch(
          `${url}?${new URLSearchParams({ table: 'items', offset: 'x', subset__limit: '1' }).toString()}`,
        );
        assert.equal(both.status, 400);
        const bothBody = (await both.json()) as { errors: Record<string, unknown> };
        assert.ok(bothBody.errors.offset);
        assert.ok((bothBody.errors.subset as Record<string, unknown>).order_by);

        // Nothing changed, and no request text reached Postgres outside a literal.
        assert.deepEqual(await tableState(db), before);
        const cluster = postgres.cluster;
        if (cluster) {
          const log = await readFile(cluster.logFile, 'utf8');
          const statements = log
            .split('\n')
            .filter((line) => / (statement|execute [^:]*): /.test(line));
          assert.ok(
            statements.some((line) => line.includes('COPY')),
            'the log holds statements',
          );
          const leaked = statements.filter((line) => sqlOutsideLiterals(line).includes(marker));
          assert.deepEqual(leaked, []);
        }
      },
      { subsetMaxRows: 50 },
    );
  });

  test('a subset with a POST needs the secret too, before its body is read', async () => {
    await withSluice(
      ITEMS,
      async ({ url }) => {
        const query = new URLSearchParams({ table: 'items', offset: '-1' });
        const denied = await fetch(`${url}?${query.toString()}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ where: 'id = 1' }),
        });
        assert.equal(denied.status, 401);
        const allowed = await fetch(`${url}?${query.toString()}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: 'Bearer s3cret' },
          body: JSON.stringify({ where: 'id = 1' }),
        });
        assert.equal(allowed.status, 200, await allowed.clone().text());
        const body = (await allowed.json()) as { data: unknown[] };
        assert.equal(body.data.length, 1);
      },
      { secret: 's3cret' },
    );
  });
});

/** The table's rows and the tables that exist: a hostile request must change neither. */
async function tableState(db: TestDatabase): Promise<unknown> {
  const { rows } = await db.query(
    `SELECT (SELECT md5(string_agg(i::text, ',' ORDER BY id)) FROM items i) AS items,
            (SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class
              WHERE relnamespace = 'public'::regnamespace) AS relations`,
  );
  return rows[0];
}
