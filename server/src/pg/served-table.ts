import type pg from 'pg';
import { shapeInvalid } from '../errors/sluice-error.js';
import { quoteTableIdentifier, type TableIdentifier } from './table-identifier.js';
import type { TablePolicy } from './table-policy.js';
import { loadTableSchema, type TableSchema } from './table-schema.js';

/**
 * The catalog entry of a table a shape may read: inside the policy (decided from the name, before
 * the catalog is asked), existing, and readable by Sluice's database role. A missing table and
 * an unreadable one get the same 400, so a request cannot probe which tables exist beyond what
 * the role may read (docs/security.md, "Table policy"). A table whose row-level security applies
 * to the role is refused: replication would send rows the snapshot hid.
 */
export async function loadServedTable(
  client: pg.ClientBase,
  table: TableIdentifier,
  policy: TablePolicy,
): Promise<TableSchema> {
  policy.check(table);
  const schema = await loadTableSchema(client, table);
  const access = schema && (await accessOf(client, schema.oid));
  if (!schema || !access?.readable) {
    throw shapeInvalid(
      'table',
      `table ${quoteTableIdentifier(table)} does not exist, or Sluice's database role may not read it (it needs USAGE on the schema and SELECT on the table)`,
    );
  }
  if (access.rowSecurity) {
    // Snapshots would see the rows the policies let through, replication sends every row.
    throw shapeInvalid(
      'table',
      `row-level security applies to Sluice's database role on table ${quoteTableIdentifier(table)}, but not to replication: serve it through a role that bypasses row-level security (BYPASSRLS), or not at all`,
    );
  }
  return schema;
}

async function accessOf(
  client: pg.ClientBase,
  oid: number,
): Promise<{ readable: boolean; rowSecurity: boolean } | undefined> {
  const { rows } = await client.query<{ readable: boolean; row_security: boolean }>(
    `SELECT has_schema_privilege(c.relnamespace, 'USAGE')
            AND has_table_privilege(c.oid, 'SELECT') AS readable,
            row_security_active(c.oid) AS row_security
       FROM pg_catalog.pg_class c WHERE c.oid = $1`,
    [oid],
  );
  const row = rows[0];
  return row && { readable: row.readable, rowSecurity: row.row_security };
}
