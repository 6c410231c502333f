// The table policy (docs/security.md, "Table policy"; issue 13): system schemas are never served,
// SLUICE_TABLES limits the tables, tables the role may not read or set up are 400s naming what
// to do, and SLUICE_PUBLISH=manual runs no DDL at all. Every refusal is a 400 under `table`,
// logged below error level, that the official client surfaces as a FetchError.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FetchError, ShapeStream } from '@electric-sql/client';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import { waitForStatus } from '../support/server-status.js';
import { startSluice, waitUntilLive, type RunningSluice } from '../support/sluice-server.js';
import { get, parseBody, type Reply } from './shape-http-helpers.js';
import { captureErrorLogs } from '../support/error-logs.js';

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(async () => {
  await postgres.stop();
});

interface Fixture {
  db: TestDatabase;
  sluice: RunningSluice;
  url: string;
}

/**
 * A database set up by `sql` (as the superuser; `$DB` and `$PUB` stand for the database's and
 * its publication's names), then a Sluice on it with `overrides`, connecting as `role` if given.
 * Nothing may be logged at error level meanwhile.
 */
async function withPolicySluice(
  sql: string,
  overrides: Parameters<typeof startSluice>[1],
  body: (fixture: Fixture) => Promise<void>,
  options: { live?: boolean; role?: string } = {},
): Promise<void> {
  const db = await postgres.createDatabase();
  let sluice: RunningSluice | undefined;
  try {
    await db.query(sql.replaceAll('$DB', db.name).replaceAll('$PUB', `"${db.publicationName}"`));
    const databaseUrl = options.role ? urlAs(db.url, options.role) : db.url;
    sluice = await startSluice(db, { databaseUrl, ...overrides });
    const errorLogs = captureErrorLogs(sluice.app);
    if (options.live !== false) await waitUntilLive(sluice.baseUrl);
    await body({ db, sluice, url: `${sluice.baseUrl}/v1/shape` });
    assert.deepEqual(errorLogs, [], 'nothing logged at error level');
  } finally {
    await sluice?.close();
    await db.drop();
  }
}

function urlAs(url: string, role: string): string {
  const u = new URL(url);
  u.username = role;
  u.password = '';
  return u.toString();
}

/** A 400 whose only reason is under `table`; returns that reason. */
function tableRefusal(reply: Reply, what: string): string {
  assert.equal(reply.status, 400, `${what}: ${reply.status} ${reply.text}`);
  const body = reply.json() as { message: string; errors: Record<string, string[]> };
  assert.equal(body.message, 'Invalid request', what);
  assert.deepEqual(Object.keys(body.errors), ['table'], what);
  const [reason, ...more] = body.errors.table ?? [];
  assert.deepEqual(more, [], what);
  assert.equal(typeof reason, 'string', what);
  return reason!;
}

async function relationState(
  db: TestDatabase,
  table: string,
): Promise<{ replident: string; published: boolean }> {
  const { rows } = await db.query<{ replident: string; published: boolean }>(
    `SELECT c.relreplident AS replident,
            EXISTS (SELECT 1 FROM pg_publication_rel WHERE prrelid = c.oid) AS published
       FROM pg_class c WHERE c.oid = $1::regclass`,
    [table],
  );
  return rows[0]!;
}

const ITEMS = `CREATE TABLE items (id int PRIMARY KEY, title text);
  INSERT INTO items VALUES (1, 'one'), (2, 'two');`;

describe('system schemas', () => {
  test('tables in system schemas are 400s, existing or not, listed or not, never logged as errors', async () => {
    for (const tables of [undefined, 'pg_catalog.*, information_schema.*, public.items']) {
      await withPolicySluice(ITEMS, { tables }, async ({ url }) => {
        const existing = [
          'pg_catalog.pg_authid',
          'information_schema.sql_features',
          'pg_toast.pg_toast_1262',
          'pg_catalog.pg_class',
        ];
        for (const table of [...existing, 'pg_catalog.no_such_table', 'pg_nope.t']) {
          const reason = tableRefusal(await get(url, { table, offset: '-1' }), table);
          assert.match(reason, /is not served: tables in system schemas/, table);
        }
        // The same answer whether the table exists or not.
        const [a, b] = await Promise.all(
          ['pg_catalog.pg_authid', 'pg_catalog.pg_authidx'].map(async (table) =>
            tableRefusal(await get(url, { table, offset: '-1' }), table),
          ),
        );
        assert.equal(a?.replace('pg_authid', 'X'), b?.replace('pg_authidx', 'X'));
        // Nothing was published or altered on the way.
        const { rows } = await postgres.query(
          "SELECT 1 FROM pg_class WHERE relname = 'pg_authid' AND relreplident = 'f'",
        );
        assert.equal(rows.length, 0);
      });
    }
  });

  test('the official client surfaces the 400 as a FetchError instead of retrying', async () => {
    await withPolicySluice(ITEMS, {}, async ({ url }) => {
      const error = await new Promise<unknown>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the client kept retrying')), 10_000);
        const stream = new ShapeStream({
          url,
          params: { table: 'pg_catalog.pg_authid' },
          onError: (failure) => {
            clearTimeout(timer);
            resolve(failure);
          },
        });
        stream.subscribe(() => undefined);
      });
      assert.ok(error instanceof FetchError, String(error));
      assert.equal(error.status, 400);
      assert.match(JSON.stringify(error.json), /system schemas/);
    });
  });
});

describe('SLUICE_TABLES', () => {
  test('only listed tables and schemas are served; the refusal does not tell whether a table exists', async () => {
    const sql = `${ITEMS}
      CREATE TABLE other (id int PRIMARY KEY);
      CREATE SCHEMA audit; CREATE TABLE audit.log (id int PRIMARY KEY);`;
    await withPolicySluice(sql, { tables: 'items, audit.*' }, async ({ url, db }) => {
      assert.equal((await get(url, { table: 'items', offset: '-1' })).status, 200);
      assert.equal((await get(url, { table: 'audit.log', offset: '-1' })).status, 200);
      const other = tableRefusal(await get(url, { table: 'other', offset: '-1' }), 'other');
      assert.match(other, /"public"."other" is not served: .*SLUICE_TABLES/);
      const missing = tableRefusal(await get(url, { table: 'nope', offset: '-1' }), 'nope');
      assert.equal(missing, other.replace('"other"', '"nope"'));
      // A listed schema does not let a request reach other schemas.
      tableRefusal(await get(url, { table: 'public.audit', offset: '-1' }), 'public.audit');
      // The refused table was not set up for replication.
      assert.deepEqual(await relationState(db, 'other'), { replident: 'd', published: false });
    });
  });

  test('after a restart with a narrower list, shapes of tables left out are gone', async () => {
    const db = await postgres.createDatabase();
    let sluice: RunningSluice | undefined;
    try {
      await db.query(`${ITEMS} CREATE TABLE other (id int PRIMARY KEY);`);
      sluice = await startSluice(db);
      await waitUntilLive(sluice.baseUrl);
      const first = await get(`${sluice.baseUrl}/v1/shape`, { table: 'other', offset: '-1' });
      assert.equal(first.status, 200);
      const handle = first.headers.get('electric-handle') ?? '';
      const offset = first.headers.get('electric-offset') ?? '';
      await sluice.close({ keepStorage: true });
      sluice = await startSluice(db, { storageDir: sluice.storageDir, tables: 'items' });
      await waitUntilLive(sluice.baseUrl);
      const url = `${sluice.baseUrl}/v1/shape`;
      const again = await get(url, { table: 'other', offset, handle });
      // The old shape is not served any more: its handle leads to the policy's refusal.
      assert.match(tableRefusal(again, 'old handle'), /SLUICE_TABLES/);
      const fresh = tableRefusal(await get(url, { table: 'other', offset: '-1' }), 'other');
      assert.match(fresh, /SLUICE_TABLES/);
    } finally {
      await sluice?.close();
      await db.drop();
    }
  });

  test('an invalid list stops the server before it starts, naming each bad entry', async () => {
    const db = await postgres.createDatabase();
    try {
      await assert.rejects(startSluice(db, { tables: 'items, a b, x.y.z' }), (error: Error) => {
        assert.equal(error.name, 'ConfigError');
        assert.match(error.message, /SLUICE_TABLES: .*"a b"/);
        assert.match(error.message, /SLUICE_TABLES: .*"x\.y\.z"/);
        return true;
      });
    } finally {
      await db.drop();
    }
  });
});

describe('privileges of the database role', () => {
  const role = `sluice_low_${randomBytes(4).toString('hex')}`;
  before(async () => {
    await postgres.query(`CREATE ROLE ${role} LOGIN REPLICATION`);
  });
  after(async () => {
    await postgres.query(`DROP ROLE IF EXISTS ${role}`);
  });

  test('a table the role cannot read, or cannot set up (42501), is a 400 naming what to run', async () => {
    const sql = `${ITEMS}
      CREATE TABLE secret (id int PRIMARY KEY, pin text);
      GRANT SELECT ON items TO ${role};
      GRANT CREATE ON DATABASE $DB TO ${role};
      CREATE TABLE guarded (id int PRIMARY KEY);
      INSERT INTO guarded VALUES (1), (2);
      ALTER TABLE guarded OWNER TO ${role};
      ALTER TABLE guarded ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
      CREATE POLICY only_two ON guarded USING (id = 2);`;
    await withPolicySluice(
      sql,
      {},
      async ({ url, db }) => {
        // SELECT is missing: the same answer as for a table that does not exist.
        const secret = tableRefusal(await get(url, { table: 'secret', offset: '-1' }), 'secret');
        assert.match(secret, /"public"."secret" does not exist, or .* may not read it/);
        const nope = tableRefusal(await get(url, { table: 'nope', offset: '-1' }), 'nope');
        assert.equal(nope, secret.replace('"secret"', '"nope"'));

        // Row-level security hides rows from the snapshot that replication would send.
        const guarded = tableRefusal(await get(url, { table: 'guarded', offset: '-1' }), 'rls');
        assert.match(guarded, /row-level security applies .* "public"."guarded"/);

        // Readable but owned by someone else: ALTER TABLE fails with 42501.
        const reason = tableRefusal(await get(url, { table: 'items', offset: '-1' }), 'items');
        assert.match(reason, /may not set up table "public"."items"/);
        const publication = `"${db.publicationName}"`;
        const statements = [
          'ALTER TABLE "public"."items" REPLICA IDENTITY FULL;',
          `ALTER PUBLICATION ${publication} ADD TABLE "public"."items";`,
        ];
        for (const statement of statements) assert.ok(reason.includes(statement), reason);

        // The statements named are the ones that make it work.
        await db.query(statements.join(' '));
        const reply = await get(url, { table: 'items', offset: '-1' });
        assert.equal(reply.status, 200, reply.text);
        const inserts = parseBody(reply).filter((m) => m.headers.operation === 'insert');
        assert.equal(inserts.length, 2);
      },
      { role },
    );
  });
});

describe('tables replication would serve wrongly', () => {
  test('an unlogged table, or a publication leaving out changes, is a 400 in auto mode too', async () => {
    const sql = `${ITEMS}
      CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY);
      CREATE PUBLICATION $PUB WITH (publish = 'insert');`;
    await withPolicySluice(sql, {}, async ({ url, db }) => {
      const scratch = tableRefusal(await get(url, { table: 'scratch', offset: '-1' }), 'scratch');
      assert.match(scratch, /unlogged/);
      const items = tableRefusal(await get(url, { table: 'items', offset: '-1' }), 'items');
      assert.match(items, /sends only some rows, columns or changes/);
      await db.query(
        `ALTER PUBLICATION "${db.publicationName}" SET (publish = 'insert, update, delete, truncate')`,
      );
      assert.equal((await get(url, { table: 'items', offset: '-1' })).status, 200);
    });
  });

  test('a FOR ALL TABLES publication needs no ALTER PUBLICATION in manual mode', async () => {
    const sql = `${ITEMS}
      ALTER TABLE items REPLICA IDENTITY FULL;
      CREATE PUBLICATION $PUB FOR ALL TABLES;`;
    await withPolicySluice(sql, { publish: 'manual' }, async ({ url }) => {
      assert.equal((await get(url, { table: 'items', offset: '-1' })).status, 200);
    });
  });
});

describe('SLUICE_PUBLISH=manual', () => {
  test('a table not set up is a 400 naming the SQL, and Sluice runs no DDL', async () => {
    const sql = `${ITEMS}
      CREATE TABLE plain (id int PRIMARY KEY);
      CREATE TABLE filtered (id int PRIMARY KEY);
      ALTER TABLE items REPLICA IDENTITY FULL;
      ALTER TABLE filtered REPLICA IDENTITY FULL;
      CREATE PUBLICATION $PUB FOR TABLE items, filtered WHERE (id > 0);`;
    await withPolicySluice(sql, { publish: 'manual' }, async ({ url, db }) => {
      assert.equal((await get(url, { table: 'items', offset: '-1' })).status, 200);

      const reason = tableRefusal(await get(url, { table: 'plain', offset: '-1' }), 'plain');
      assert.match(reason, /SLUICE_PUBLISH=manual/);
      const statements = [
        'ALTER TABLE "public"."plain" REPLICA IDENTITY FULL;',
        `ALTER PUBLICATION "${db.publicationName}" ADD TABLE "public"."plain";`,
      ];
      for (const statement of statements) assert.ok(reason.includes(statement), reason);
      assert.deepEqual(await relationState(db, 'plain'), { replident: 'd', published: false });

      // A row filter would hide changes: refused, in every mode.
      const filtered = tableRefusal(await get(url, { table: 'filtered', offset: '-1' }), 'f');
      assert.match(filtered, /sends only some rows, columns or changes/);

      await db.query(statements.join(' '));
      assert.equal((await get(url, { table: 'plain', offset: '-1' })).status, 200);
    });
  });

  test('a missing publication stops replication, reported in /v1/status, until it is created', async () => {
    await withPolicySluice(
      ITEMS,
      { publish: 'manual' },
      async ({ sluice, db }) => {
        let status: { replication: { last_error?: { code: string; message: string } } };
        const deadline = Date.now() + 15_000;
        for (;;) {
          status = (await (await fetch(`${sluice.baseUrl}/v1/status`)).json()) as typeof status;
          if (status.replication.last_error) break;
          assert.ok(
            Date.now() < deadline,
            `no replication error reported: ${JSON.stringify(status)}`,
          );
          await sleep(50);
        }
        assert.equal(status.replication.last_error?.code, 'PUBLICATION_MISSING');
        assert.match(status.replication.last_error?.message ?? '', /CREATE PUBLICATION/);
        const { rows } = await db.query('SELECT 1 FROM pg_publication');
        assert.equal(rows.length, 0, 'Sluice created no publication');

        // Meanwhile shapes are answered from fallback rows, under the same policy.
        await waitForStatus(sluice.baseUrl, 'fallback', 15_000);
        const url = `${sluice.baseUrl}/v1/shape`;
        const fallback = await get(url, { table: 'items', offset: '-1' });
        assert.equal(fallback.status, 200, fallback.text);
        assert.equal(fallback.headers.get('electric-fallback-mode'), 'true');
        const system = { table: 'pg_catalog.pg_authid', offset: '-1' };
        assert.match(tableRefusal(await get(url, system), 'fallback'), /system schemas/);
        const listed = { table: 'information_schema.sql_features', offset: '-1' };
        assert.match(tableRefusal(await get(url, listed), 'fallback'), /system schemas/);

        await db.query(`CREATE PUBLICATION "${db.publicationName}" FOR TABLE items`);
        await waitUntilLive(sluice.baseUrl);
      },
      { live: false },
    );
  });
});
