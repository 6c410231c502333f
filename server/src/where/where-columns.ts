import type pg from 'pg';
import type { TableSchema } from '../pg/table-schema.js';
import type { TextRules } from './filter-spec.js';
import { scalarTypeNamed, type PgType } from './pg-type.js';

/** What the where compiler knows of one column. */
export interface WhereColumn {
  name: string;
  /** Undefined for types the evaluator cannot read (json, bytea, enums, domains, …). */
  type: PgType | undefined;
  /** Postgres' name for the type, for messages. */
  typeName: string;
  /**
   * The type is varchar (or varchar[]), which behaves as text except that varchar[] and text[]
   * are different types to array operators.
   */
  varchar: boolean;
  generated: boolean;
  /** NOT NULL: a subquery under NOT IN on it never meets SQL's NULL cases (subquery.ts). */
  notNull: boolean;
  /** For text columns: how the column's collation compares and maps case. */
  text: TextRules;
  /** Equality is byte equality (every collation except nondeterministic ICU ones). */
  deterministic: boolean;
  /** The collation's name, for messages. */
  collation: string;
  /** The column uses the database's default collation (which any other collation overrides). */
  defaultCollation: boolean;
}

export interface WhereTable {
  name: string;
  columns: Map<string, WhereColumn>;
  /** Rules of the database's default collation, for text that comes from no column. */
  defaultText: TextRules;
}

interface CollationRow {
  attname: string;
  collname: string | null;
  provider: string | null;
  collate: string | null;
  ctype: string | null;
  locale: string | null;
  deterministic: boolean | null;
}

// Each column's collation, with the database's own locale standing in for "default". Locale
// columns moved between versions (daticulocale in 15-16, datlocale in 17), so they are read
// through to_jsonb, which does not fail on a missing key.
const COLLATIONS_SQL = `
SELECT a.attname::text AS attname,
       co.collname::text AS collname,
       CASE WHEN co.collprovider IN ('d') OR co.oid IS NULL THEN d.datlocprovider::text
            ELSE co.collprovider::text END AS provider,
       CASE WHEN co.collprovider = 'd' OR co.oid IS NULL THEN d.datcollate
            ELSE co.collcollate END AS collate,
       CASE WHEN co.collprovider = 'd' OR co.oid IS NULL THEN d.datctype
            ELSE co.collctype END AS ctype,
       CASE WHEN co.collprovider = 'd' OR co.oid IS NULL
            THEN coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale')
            ELSE coalesce(to_jsonb(co) ->> 'colllocale', to_jsonb(co) ->> 'colliculocale') END
         AS locale,
       coalesce(co.collisdeterministic, true) AS deterministic
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_database d ON d.datname = current_database()
  LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT '', 'default', d.datlocprovider::text, d.datcollate, d.datctype,
       coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale'), true
  FROM pg_catalog.pg_database d WHERE d.datname = current_database()`;

const C_LOCALES = /^(c|posix)$/i;
const C_UTF8_LOCALES = /^c\.utf-?8$/i;

/**
 * How a collation behaves, as far as the evaluator can follow it: libc's C, POSIX and C.UTF-8
 * and the builtin provider order by code point (C.UTF-8 in glibc is defined that way); C and
 * POSIX change the case of ASCII letters only; other libc locales map one character at a time;
 * ICU maps whole strings. Other orderings (en_US, ICU) are not reproduced.
 */
function textRules(provider: string, collate: string, ctype: string, locale: string): TextRules {
  if (provider === 'b') {
    return { codePointOrder: true, caseMapping: C_LOCALES.test(locale) ? 'ascii' : 'simple' };
  }
  if (provider === 'i') return { codePointOrder: false, caseMapping: 'full' };
  return {
    codePointOrder: C_LOCALES.test(collate) || C_UTF8_LOCALES.test(collate),
    caseMapping: C_LOCALES.test(ctype) ? 'ascii' : 'simple',
  };
}

/** Reads the table's columns and collations for the where compiler: one catalog query. */
export async function loadWhereTable(
  client: pg.ClientBase,
  schema: TableSchema,
): Promise<WhereTable> {
  const { rows } = await client.query<CollationRow>(COLLATIONS_SQL, [schema.oid]);
  const rulesOf = (row: CollationRow) =>
    textRules(row.provider ?? 'c', row.collate ?? '', row.ctype ?? '', row.locale ?? '');
  const databaseRow = rows.find((row) => row.attname === '' && row.collname === 'default');
  const defaultText = databaseRow
    ? rulesOf(databaseRow)
    : { codePointOrder: false, caseMapping: 'full' as const };
  const columns = new Map<string, WhereColumn>();
  for (const column of schema.columns) {
    const row = rows.find((r) => r.attname === column.name);
    const scalar = scalarTypeNamed(column.typname);
    const supported = scalar !== undefined && column.typeKind === 'base';
    columns.set(column.name, {
      name: column.name,
      type: supported ? { scalar, array: column.dims > 0 } : undefined,
      typeName: column.formattedType,
      varchar: column.typname === 'varchar',
      generated: column.generated,
      notNull: column.notNull,
      text: row ? rulesOf(row) : defaultText,
      deterministic: row?.deterministic ?? true,
      collation:
        row?.collname === 'default' || !row?.collname ? (row?.collate ?? '') : row.collname,
      defaultCollation: row?.collname === 'default' || !row?.collname,
    });
  }
  return { name: `${schema.schema}.${schema.name}`, columns, defaultText };
}
