// Row keys (docs/protocol.md §4): `"<schema>"."<table>"/"<v1>"/"<v2>"`.
//
// What Electric does, read in electric-sql/electric at dc07a1e6 (2026-08-21),
// packages/sync-service/lib/electric/replication/changes.ex, `build_key/3` with its helpers
// `prefix_from_rel/1`, `escape_rel_component/1` and `escape_pk_section/1` (and its doctests):
//   - the relation prefix is the schema and the table each wrapped in `"`, joined by `.`; inside
//     them every `/` is doubled and every `.` is doubled. A `"` inside a name is NOT escaped
//     (doctest: table `b"/"` gives `"a"."b"//""`);
//   - every key part is `/` + `"` + value + `"`, with every `/` in the value doubled and nothing
//     else escaped (a `"` in a value stays as it is); the quotes keep an empty string from making
//     a `//` pair;
//   - a NULL part is `/_` (no quotes), so it differs from the string "_" (`/"_"`);
//   - with no key columns it uses all columns of the record sorted by column name (Elixir sorts
//     binaries byte-wise).
// Electric's snapshot query builds the same key in SQL (shapes/querying.ex, `join_primary_keys/1`:
// `'"' || replace(col::text, '/', '//') || '"'`, coalesced to `'_'`). Its snapshot prefix however
// comes from `Utils.relation_to_sql(rel, true)`, which doubles `"` and leaves `.` and `/` alone, so
// Electric's own snapshot and replication keys disagree for relation names containing `"`, `.`
// or `/`. Sluice uses the build_key spelling on both paths so the keys are always identical.
//
// Which columns a table without a primary key keys on: docs/protocol.md §4 says all columns sorted by
// name (build_key's fallback above). Note that Electric's live path actually passes
// `Inspector.get_pk_cols/1` (postgres/inspector.ex), which for such tables is all columns in
// attnum order; only a dropped table gets the sorted fallback. Clients treat keys as opaque, so
// either is compatible as long as snapshot and replication agree; `rowKeyColumns` is the one
// place that decides.

import type { TableSchema } from '../pg/table-schema.js';

/** `"schema"."table"` with Electric's escaping; compute once per shape, not per row. */
export function relationKeyPrefix(schema: string, table: string): string {
  return `"${escapeRelationPart(schema)}"."${escapeRelationPart(table)}"`;
}

/** The key of one row from its key column values (text output, or null), in key order. */
export function buildRowKey(
  schema: string,
  table: string,
  keyValues: readonly (string | null)[],
): string {
  let key = relationKeyPrefix(schema, table);
  for (const value of keyValues) key += value === null ? '/_' : `/"${escapeKeyValue(value)}"`;
  return key;
}

/** A non-NULL key value as it stands between its part's quotes: every `/` doubled. */
export function escapeKeyValue(value: string): string {
  return value.includes('/') ? value.replaceAll('/', '//') : value;
}

/**
 * The columns a table's row keys are built from, in order: the primary key columns in key
 * order, or, for a table without a primary key, every column sorted by name (byte-wise on
 * UTF-8, as Elixir sorts binaries).
 */
export function rowKeyColumns(schema: Pick<TableSchema, 'primaryKey' | 'columns'>): string[] {
  if (schema.primaryKey.length > 0) return [...schema.primaryKey];
  return schema.columns
    .map((column) => column.name)
    .sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
}

function escapeRelationPart(part: string): string {
  return part.replaceAll('/', '//').replaceAll('.', '..');
}
