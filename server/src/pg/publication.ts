// The publication names the tables replication sends. With SLUICE_PUBLISH=auto, whichever needs it
// first creates it: the replication connection before it streams (pgoutput refuses a missing
// publication), or the first shape adding its table. With `manual` the operator does.
import type { ClientBase } from 'pg';
import type { PublishMode } from '../config/config-options.js';
import { shapeInvalid, SluiceError } from '../errors/sluice-error.js';
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

/**
 * Readies a shape's table for replication: in the publication, with REPLICA IDENTITY FULL (old
 * rows on update and delete). `auto` runs the missing statements; `manual` runs none and
 * refuses the table naming them, as does `auto` when the role may not run them (42501). A
 * publication sending only part of the table, or an unlogged table, is refused in both modes:
 * serving it would silently miss changes.
 */
export async function publishTable(
  client: ClientBase,
  name: string,
  table: TableIdentifier & { oid: number },
  mode: PublishMode,
): Promise<void> {
  const quotedTable = quoteTableIdentifier(table);
  const quotedPublication = quoteIdentifier(name);
  const { rows } = await client.query<TableReadiness>(READINESS_SQL, [table.oid, name]);
  const row = rows[0];
  if (!row) throw shapeInvalid('table', `table ${quotedTable} does not exist`); // dropped just now
  if (row.unlogged) {
    throw tableNotReady(
      `table ${quotedTable} is unlogged and Postgres does not replicate unlogged tables: ALTER TABLE ${quotedTable} SET LOGGED;`,
    );
  }
  if (row.partial) {
    throw tableNotReady(
      `publication ${quotedPublication} sends only some rows, columns or changes of table ${quotedTable}, and Sluice needs them all: ALTER PUBLICATION ${quotedPublication} SET (publish = 'insert, update, delete, truncate'); and, for a row filter or column list, ALTER PUBLICATION ${quotedPublication} DROP TABLE ${quotedTable}; ALTER PUBLICATION ${quotedPublication} ADD TABLE ${quotedTable};`,
    );
  }
  const missing: string[] = [];
  if (!row.publication) missing.push(`CREATE PUBLICATION ${quotedPublication};`);
  if (!row.full_identity) missing.push(`ALTER TABLE ${quotedTable} REPLICA IDENTITY FULL;`);
  if (!row.published) {
    missing.push(`ALTER PUBLICATION ${quotedPublication} ADD TABLE ${quotedTable};`);
  }
  if (missing.length === 0) return;
  if (mode === 'manual') {
    throw tableNotReady(
      `table ${quotedTable} is not set up for replication, and Sluice runs no DDL (SLUICE_PUBLISH=manual): run ${missing.join(' ')}`,
    );
  }
  try {
    if (!row.full_identity) await client.query(`ALTER TABLE ${quotedTable} REPLICA IDENTITY FULL`);
    if (!row.publication) await createPublication(client, name).catch(ignoreDuplicate);
    if (!row.published) {
      await client
        .query(`ALTER PUBLICATION ${quotedPublication} ADD TABLE ${quotedTable}`)
        .catch(ignoreDuplicate);
    }
  } catch (error) {
    if ((error as { code?: string }).code !== '42501') throw error;
    throw tableNotReady(
      `Sluice's database role may not set up table ${quotedTable} for replication (permission denied; it must own the table and the publication): run as the table's owner ${missing.join(' ')}`,
      error,
    );
  }
}

interface TableReadiness {
  unlogged: boolean;
  full_identity: boolean;
  publication: boolean;
  published: boolean;
  partial: boolean;
}

// A table is published when listed, or by a FOR ALL TABLES or FOR TABLES IN SCHEMA publication
// (pg_publication_tables). A row filter or column list (prqual, prattrs: Postgres 15+, read
// through to_jsonb so older servers answer too) or an operation left out makes it partial.
const READINESS_SQL = `
SELECT c.relpersistence = 'u' AS unlogged,
       c.relreplident = 'f' AS full_identity,
       p.oid IS NOT NULL AS publication,
       COALESCE(p.puballtables OR pr.oid IS NOT NULL
         OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables pt
                     WHERE pt.pubname = p.pubname AND pt.schemaname = n.nspname
                       AND pt.tablename = c.relname), false) AS published,
       COALESCE(NOT (p.pubinsert AND p.pubupdate AND p.pubdelete AND p.pubtruncate)
         OR to_jsonb(pr) ->> 'prqual' IS NOT NULL
         OR to_jsonb(pr) ->> 'prattrs' IS NOT NULL, false) AS partial
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_publication p ON p.pubname = $2
  LEFT JOIN pg_catalog.pg_publication_rel pr ON pr.prpubid = p.oid AND pr.prrelid = c.oid
 WHERE c.oid = $1`;

function tableNotReady(message: string, cause?: unknown): SluiceError {
  return new SluiceError('SLUICE_ERR_TABLE_NOT_READY', message, { field: 'table' }, { cause });
}

async function createPublication(client: ClientBase, name: string): Promise<void> {
  await client.query(`CREATE PUBLICATION ${quoteIdentifier(name)}`);
}

/** Another request (or server) got there first. */
function ignoreDuplicate(error: unknown): void {
  if ((error as { code?: string }).code !== '42710') throw error;
}
