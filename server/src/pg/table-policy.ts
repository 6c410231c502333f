// Which tables shapes may read, and whether Sluice may set them up for replication itself
// (docs/security.md, "Table policy"). Serving a table is decided from its name alone, before the
// catalog is asked, so a refusal says nothing about whether the table exists.
import type { PublishMode } from '../config/config-options.js';
import { ConfigError } from '../config/load-config.js';
import { SluiceError } from '../errors/sluice-error.js';
import {
  parseIdentifier,
  parseTableIdentifier,
  quoteTableIdentifier,
  type TableIdentifier,
} from './table-identifier.js';

/** An entry of `SLUICE_TABLES`: one table, or every table of a schema (`name` undefined). */
export interface TablePattern {
  schema: string;
  name: string | undefined;
}

export class TablePolicy {
  /**
   * @param tables undefined: every table the database role can read (Postgres privileges decide).
   * @param publish whether Sluice runs the DDL that readies a table for replication.
   */
  constructor(
    readonly tables: readonly TablePattern[] | undefined,
    readonly publish: PublishMode,
  ) {}

  /** The policy `SLUICE_TABLES` and `SLUICE_PUBLISH` set; a bad list is a ConfigError. */
  static fromConfig(config: { tables: string | undefined; publish: PublishMode }): TablePolicy {
    const tables = config.tables === undefined ? undefined : parseTableList(config.tables);
    return new TablePolicy(tables, config.publish);
  }

  /** Throws `SLUICE_ERR_TABLE_NOT_SERVED` (a 400 under `table`) when the name is outside. */
  check(table: TableIdentifier): void {
    const reason = this.refusal(table);
    if (reason !== undefined) {
      throw new SluiceError(
        'SLUICE_ERR_TABLE_NOT_SERVED',
        `table ${quoteTableIdentifier(table)} is not served: ${reason}`,
        { field: 'table' },
      );
    }
  }

  /** Why the policy leaves `table` out; undefined when it is served. */
  refusal(table: TableIdentifier): string | undefined {
    if (isSystemSchema(table.schema)) {
      return 'tables in system schemas (pg_catalog, information_schema, pg_toast, any pg_* schema) never are';
    }
    const listed = this.tables?.some(
      (pattern) =>
        pattern.schema === table.schema &&
        (pattern.name === undefined || pattern.name === table.name),
    );
    if (listed === false) return "it is not in the server's table list (SLUICE_TABLES)";
    return undefined;
  }
}

/**
 * Postgres reserves `pg_` names for its own schemas (pg_catalog, pg_toast, the pg_temp_N of
 * other sessions' temporary tables); information_schema is the SQL-standard view of the catalog.
 */
function isSystemSchema(schema: string): boolean {
  return schema === 'information_schema' || schema.startsWith('pg_');
}

/**
 * `public.items, "My Schema"."a,b", audit.*`: entries are split at commas outside double quotes,
 * trimmed, and each is read like the `table` parameter (a bare name is in `public`), or as
 * `schema.*`. Throws a ConfigError naming every bad entry.
 */
export function parseTableList(text: string): TablePattern[] {
  const patterns: TablePattern[] = [];
  const problems: string[] = [];
  for (const entry of splitOutsideQuotes(text)) {
    const trimmed = entry.trim();
    try {
      if (trimmed === '')
        throw new Error('an entry is empty (two commas in a row, or one at an end)');
      patterns.push(
        trimmed.endsWith('.*')
          ? { schema: parseIdentifier(trimmed.slice(0, -2), 'schema name'), name: undefined }
          : parseTableIdentifier(trimmed),
      );
    } catch (error) {
      problems.push(`SLUICE_TABLES: ${(error as Error).message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return patterns;
}

/** A `""` inside quotes flips the state twice, so it needs no special case. */
function splitOutsideQuotes(text: string): string[] {
  const entries: string[] = [];
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '"') quoted = !quoted;
    else if (text[i] === ',' && !quoted) {
      entries.push(text.slice(start, i));
      start = i + 1;
    }
  }
  entries.push(text.slice(start));
  return entries;
}
