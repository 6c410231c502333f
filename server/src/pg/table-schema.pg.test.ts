import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import { buildSchemaHeader, loadTableSchema, typeModifiers } from './table-schema.js';

let postgres: TestPostgres;
let db: TestDatabase;
let pool: pg.Pool;

before(async () => {
  postgres = await startPostgres();
  db = await postgres.createDatabase();
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  await db.query(`
    CREATE TYPE mood AS ENUM ('sad', 'happy');
    CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
    CREATE TYPE pair AS (x int4, y text);
    CREATE TABLE everything (
      id int8 PRIMARY KEY,
      i2 int2 NOT NULL,
      i4 int4,
      f8 float8,
      num numeric(10,2),
      flag bool NOT NULL,
      body text,
      title varchar(20),
      code char(3),
      uid uuid,
      j json,
      jb jsonb,
      at timestamptz,
      bin bytea,
      m mood,
      p posint,
      pr pair,
      ints int4[],
      grid text[][]
    );
  `);
});

after(async () => {
  await pool?.end();
  await db?.drop();
  await postgres?.stop();
});

test('buildSchemaHeader over every PROTOCOL §4 type gives the exact electric-schema JSON', async () => {
  const schema = await loadTableSchema(pool, { schema: 'public', name: 'everything' });
  assert.ok(schema);
  assert.equal(
    buildSchemaHeader(schema),
    '{"id":{"type":"int8","pk_index":0,"not_null":true},' +
      '"i2":{"type":"int2","not_null":true},' +
      '"i4":{"type":"int4"},' +
      '"f8":{"type":"float8"},' +
      '"num":{"type":"numeric","precision":10,"scale":2},' +
      '"flag":{"type":"bool","not_null":true},' +
      '"body":{"type":"text"},' +
      '"title":{"type":"varchar","max_length":20},' +
      '"code":{"type":"bpchar","length":3},' +
      '"uid":{"type":"uuid"},' +
      '"j":{"type":"json"},' +
      '"jb":{"type":"jsonb"},' +
      '"at":{"type":"timestamptz"},' +
      '"bin":{"type":"bytea"},' +
      '"m":{"type":"mood"},' +
      '"p":{"type":"posint"},' +
      '"pr":{"type":"pair"},' +
      '"ints":{"type":"int4","dims":1},' +
      '"grid":{"type":"text","dims":2}}',
  );
  // Only the selected columns, in table order whatever the order asked for.
  assert.equal(
    buildSchemaHeader(schema, ['grid', 'id', 'title']),
    '{"id":{"type":"int8","pk_index":0,"not_null":true},"title":{"type":"varchar","max_length":20},"grid":{"type":"text","dims":2}}',
  );
  assert.throws(() => buildSchemaHeader(schema, ['id', 'nope']), /no column "nope"/);

  assert.equal(schema.schema, 'public');
  assert.equal(schema.name, 'everything');
  assert.equal(schema.kind, 'table');
  assert.deepEqual(schema.primaryKey, ['id']);
  assert.equal(schema.hasPrimaryKey, true);
  assert.deepEqual(
    schema.columns.map((c) => c.attnum),
    schema.columns.map((_, i) => i + 1),
  );
  const { rows } = await db.query<{ oid: string; relid: string }>(
    "SELECT 'int4[]'::regtype::oid::int8::text AS oid, 'everything'::regclass::oid::int8::text AS relid",
  );
  assert.equal(schema.oid, Number(rows[0]!.relid));
  const ints = schema.columns.find((c) => c.name === 'ints')!;
  assert.equal(ints.typeOid, Number(rows[0]!.oid));
  assert.equal(ints.elementTypeOid, 23);
  assert.equal(ints.formattedType, 'integer[]');
  assert.deepEqual(
    Object.fromEntries(schema.columns.map((c) => [c.name, c.typeKind])),
    Object.fromEntries(
      schema.columns.map((c) => [
        c.name,
        { m: 'enum', p: 'domain', pr: 'composite' }[c.name] ?? 'base',
      ]),
    ),
  );
});

test('composite primary keys: key order, pk_index is 0-based in key order, not table order', async () => {
  await db.query('CREATE TABLE composite (a text, b int4, c text, PRIMARY KEY (b, a))');
  const schema = await loadTableSchema(pool, { schema: 'public', name: 'composite' });
  assert.ok(schema);
  assert.deepEqual(schema.primaryKey, ['b', 'a']);
  assert.equal(
    buildSchemaHeader(schema),
    '{"a":{"type":"text","pk_index":1,"not_null":true},"b":{"type":"int4","pk_index":0,"not_null":true},"c":{"type":"text"}}',
  );
});

test('no primary key, dropped and generated columns, quoted names, non-ASCII and __proto__', async () => {
  await db.query(`
    CREATE SCHEMA "My Schema";
    CREATE TABLE "My Schema"."Odd ""Table""" (
      "__proto__" text,
      gone int4,
      "名前" varchar(5) NOT NULL,
      total int4 GENERATED ALWAYS AS (length("名前")) STORED
    );
    ALTER TABLE "My Schema"."Odd ""Table""" DROP COLUMN gone;
  `);
  const schema = await loadTableSchema(pool, { schema: 'My Schema', name: 'Odd "Table"' });
  assert.ok(schema);
  assert.equal(schema.hasPrimaryKey, false);
  assert.deepEqual(schema.primaryKey, []);
  assert.deepEqual(
    schema.columns.map((c) => [c.name, c.attnum, c.generated]),
    [
      ['__proto__', 1, false],
      ['名前', 3, false],
      ['total', 4, true],
    ],
  );
  const header = buildSchemaHeader(schema);
  // Pure ASCII, so Node can send it and fetch() reads it back unchanged.
  assert.equal(
    header,
    '{"__proto__":{"type":"text"},"\\u540d\\u524d":{"type":"varchar","not_null":true,"max_length":5},"total":{"type":"int4"}}',
  );
  assert.deepEqual(Object.keys(JSON.parse(header) as object), ['__proto__', '名前', 'total']);
});

test('type modifiers follow Electric: interval, time precision, bit, numeric without typmod, arrays of varchar', async () => {
  await db.query(`
    CREATE TABLE mods (
      id int4 PRIMARY KEY,
      iv interval,
      iv_ds interval day to second(3),
      iv_ym interval year to month,
      iv_h interval hour,
      iv_p interval(2),
      ts timestamptz(3),
      t time(0),
      d date,
      b bit(4),
      vb varbit(8),
      vb_any varbit,
      n numeric,
      n5 numeric(5),
      tags varchar(10)[],
      moods mood[],
      doms posint[]
    )`);
  const schema = await loadTableSchema(pool, { schema: 'public', name: 'mods' });
  assert.ok(schema);
  assert.equal(
    buildSchemaHeader(schema),
    '{"id":{"type":"int4","pk_index":0,"not_null":true},' +
      '"iv":{"type":"interval"},' +
      '"iv_ds":{"type":"interval","fields":"DAY TO SECOND","precision":3},' +
      '"iv_ym":{"type":"interval","fields":"YEAR TO MONTH"},' +
      '"iv_h":{"type":"interval","fields":"HOUR"},' +
      '"iv_p":{"type":"interval","precision":2},' +
      '"ts":{"type":"timestamptz","precision":3},' +
      // time(0): typmod 0 is not > 0, so Electric falls through to the raw type_mod.
      '"t":{"type":"time","type_mod":0},' +
      '"d":{"type":"date"},' +
      '"b":{"type":"bit","length":4},' +
      '"vb":{"type":"varbit","length":8},' +
      '"vb_any":{"type":"varbit","length":-1},' +
      '"n":{"type":"numeric"},' +
      '"n5":{"type":"numeric","precision":5,"scale":0},' +
      '"tags":{"type":"varchar","dims":1,"max_length":10},' +
      '"moods":{"type":"mood","dims":1},' +
      '"doms":{"type":"posint","dims":1}}',
  );
  assert.deepEqual(typeModifiers('numeric', ((5 << 16) | (-2 & 0x7ff)) + 4), {
    precision: 5,
    scale: -2,
  });
});

test('arrays with attndims 0 (CREATE TABLE AS) still get dims and the element type; vectors are not arrays', async () => {
  await db.query(`
    CREATE TABLE made_as AS SELECT ARRAY[1, 2]::int4[] AS ints, ARRAY[['a']]::text[] AS grid,
                                   '1 2'::int2vector AS vec, 'x'::name AS nm, point(1, 2) AS pt`);
  const { rows } = await db.query<{ attndims: number }>(
    "SELECT attndims FROM pg_attribute WHERE attrelid = 'made_as'::regclass AND attname = 'ints'",
  );
  const schema = await loadTableSchema(pool, { schema: 'public', name: 'made_as' });
  assert.ok(schema);
  assert.equal(
    buildSchemaHeader(schema),
    '{"ints":{"type":"int4","dims":1},"grid":{"type":"text","dims":1},' +
      '"vec":{"type":"int2vector"},"nm":{"type":"name"},"pt":{"type":"point"}}',
  );
  // Documents why: Postgres did not record the dimensions here.
  assert.equal(rows[0]!.attndims, 0);
});

test('undefined for missing tables, views and other non-table relations; works on a Client and partitions', async () => {
  await db.query(`
    CREATE VIEW v AS SELECT 1 AS x;
    CREATE SEQUENCE s;
    CREATE TABLE parted (id int4, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
    CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
    CREATE TABLE empty_cols ();
  `);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    assert.equal(await loadTableSchema(client, { schema: 'public', name: 'nope' }), undefined);
    assert.equal(await loadTableSchema(client, { schema: 'nope', name: 'everything' }), undefined);
    assert.equal(
      await loadTableSchema(client, { schema: 'public', name: 'Everything' }),
      undefined,
    );
    assert.equal(await loadTableSchema(client, { schema: 'public', name: 'v' }), undefined);
    assert.equal(await loadTableSchema(client, { schema: 'public', name: 's' }), undefined);
    const parted = await loadTableSchema(client, { schema: 'public', name: 'parted' });
    assert.equal(parted?.kind, 'partitioned_table');
    assert.deepEqual(parted?.primaryKey, ['id', 'region']);
    const partition = await loadTableSchema(client, { schema: 'public', name: 'parted_eu' });
    assert.equal(partition?.kind, 'table');
    assert.deepEqual(partition?.primaryKey, ['id', 'region']);
    const empty = await loadTableSchema(client, { schema: 'public', name: 'empty_cols' });
    assert.deepEqual(empty?.columns, []);
    assert.equal(empty && buildSchemaHeader(empty), '{}');
  } finally {
    await client.end();
  }
});
