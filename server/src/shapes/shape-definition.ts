import { createHash } from 'node:crypto';
import { canonicalWhere } from '../where/canonical-where.js';

/** What identifies a shape (docs/protocol.md §3): same definition, same shape, same handle. */
export interface ShapeDefinition {
  table: { schema: string; name: string };
  /** Requested columns in table order, or undefined for all. */
  columns: string[] | undefined;
  replica: 'default' | 'full';
  log: 'full' | 'changes_only';
  /** The where clause as sent, and its `params[n]` values in order (docs/protocol.md §2). */
  where?: string;
  params?: string[];
}

/**
 * A stable string naming the definition, used to find an existing shape. The where clause counts
 * by its canonical form (`canonicalWhere`), so spellings of one clause share a shape; a clause
 * without one (invalid) counts by its text. Keys are computed, never stored: shapes stored under
 * an older scheme key the same way once loaded.
 */
export function definitionKey(definition: ShapeDefinition): string {
  const { table, columns, replica, log, where, params } = definition;
  // Shapes stored before where clauses existed have neither field: their keys stay the same.
  const canonical = where === undefined ? undefined : canonicalWhere(where);
  const clause = canonical === undefined ? where : { canonical };
  const filter = where === undefined ? [] : [clause, params ?? []];
  return JSON.stringify([table.schema, table.name, columns ?? null, replica, log, ...filter]);
}

/**
 * What a subquery shape's tags are salted with (docs/protocol.md §13.2): the same for every
 * handle of one definition, so rows read for it in fallback mode tag as its log's rows do.
 */
export function tagSalt(definition: ShapeDefinition): string {
  return createHash('sha256').update(definitionKey(definition)).digest('hex').slice(0, 16);
}
