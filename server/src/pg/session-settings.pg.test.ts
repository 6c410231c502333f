import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import { SESSION_SETTINGS, sessionOptionsString } from './session-settings.js';

let postgres: TestPostgres;
let db: TestDatabase;

before(async () => {
  postgres = await startPostgres();
  db = await postgres.createDatabase();
});

after(async () => {
  await db?.drop();
  await postgres?.stop();
});

test('sessionOptionsString escapes the space in "ISO, DMY" for libpq', () => {
  assert.equal(
    sessionOptionsString(),
    '-c DateStyle=ISO,\\ DMY -c TimeZone=UTC -c extra_float_digits=1 -c IntervalStyle=iso_8601 -c bytea_output=hex',
  );
  assert.equal(sessionOptionsString({ a: 'x\\y z' }), '-c a=x\\\\y\\ z');
});

async function showAll(client: pg.Client): Promise<Record<string, string>> {
  const seen: Record<string, string> = {};
  for (const name of Object.keys(SESSION_SETTINGS)) {
    const { rows } = await client.query<Record<string, string>>(`SHOW ${name}`);
    seen[name] = Object.values(rows[0]!)[0]!;
  }
  return seen;
}

test('a client connected with options: sessionOptionsString() sees every setting', async () => {
  const client = new pg.Client({ connectionString: db.url, options: sessionOptionsString() });
  await client.connect();
  try {
    assert.deepEqual(await showAll(client), { ...SESSION_SETTINGS });
    // And they take effect on output.
    const { rows } = await client.query<Record<string, string>>(
      `SELECT '2024-03-01 12:00:00+02'::timestamptz::text AS ts, 0.1::float8::text AS f,
              '1 day 2 hours'::interval::text AS i, '\\x0102'::bytea::text AS b,
              '01/02/2024'::date::text AS d`,
    );
    assert.deepEqual(rows[0], {
      ts: '2024-03-01 10:00:00+00',
      f: '0.1',
      i: 'P1DT2H',
      b: '\\x0102',
      d: '2024-02-01', // DMY: 01/02 is the 1st of February
    });
  } finally {
    await client.end();
  }
});
