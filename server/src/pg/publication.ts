// The publication names the tables replication sends. Whichever needs it first creates it: the
// replication connection before it streams (pgoutput refuses a missing publication), or the first
// shape adding its table.
import type { ClientBase } from 'pg';
import { quoteLiteral } from './quote-literal.js';
import { quoteIdentifier, quoteTableIdentifier, type TableIdentifier } from './table-identifier.js';

/**
 * Creates the publication unless it exists; works on a replication connection too. Losing a race
 * to a shape creating it fails with 42710, like any setup error: the next stream finds it.
 */
export async function ensurePublication(client: ClientBase, name: string): Promise<void> {
  const found = await client.query(
    `SELECT 1 FROM pg_publication WHERE pubname = ${quoteLiteral(name)}`,
  );
  if (found.rowCount === 0) await createPublication(client, name);
}

/** Tables in shapes are in the publication with REPLICA IDENTITY FULL (old rows on update/delete). */
export async function publishTable(
  client: ClientBase,
  name: string,
  table: TableIdentifier & { oid: number },
): Promise<void> {
  const quotedTable = quoteTableIdentifier(table);
  const { rows } = await client.query<{
    relreplident: string;
    published: boolean;
    publication: boolean;
  }>(
    `SELECT c.relreplident,
            EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                    WHERE p.pubname = $2 AND pr.prrelid = c.oid) AS published,
            EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $2) AS publication
       FROM pg_class c WHERE c.oid = $1`,
    [table.oid, name],
  );
  const row = rows[0];
  if (row?.relreplident !== 'f') {
    await client.query(`ALTER TABLE ${quotedTable} REPLICA IDENTITY FULL`);
  }
  if (!row?.publication) await createPublication(client, name).catch(ignoreDuplicate);
  if (!row?.published) {
    await client
      .query(`ALTER PUBLICATION ${quoteIdentifier(name)} ADD TABLE ${quotedTable}`)
      .catch(ignoreDuplicate);
  }
}

async function createPublication(client: ClientBase, name: string): Promise<void> {
  await client.query(`CREATE PUBLICATION ${quoteIdentifier(name)}`);
}

/** Another request (or server) got there first. */
function ignoreDuplicate(error: unknown): void {
  if ((error as { code?: string }).code !== '42710') throw error;
}
