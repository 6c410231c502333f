import pg from 'pg';

export const DEMO_TABLE = 'demo_items';

/** Creates the demo table `npm start` advertises, with a few rows, unless it already exists. */
export async function seedDemoTable(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_tables WHERE tablename = $1', [
      DEMO_TABLE,
    ]);
    if (rowCount) return;
    await client.query(`
      CREATE TABLE ${DEMO_TABLE} (
        id serial PRIMARY KEY,
        title text NOT NULL,
        done boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      INSERT INTO ${DEMO_TABLE} (title, done) VALUES
        ('Read docs/protocol.md', true),
        ('Point @electric-sql/client at Sluice', false),
        ('Insert a row and watch it arrive', false);
    `);
  } finally {
    await client.end();
  }
}
