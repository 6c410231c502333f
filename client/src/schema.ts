/**
 * A column of the `electric-schema` header (docs/protocol.md §5): `type` is the Postgres type name (of
 * the element type for arrays), `dims` is present only for arrays, `not_null` only when true,
 * `pk_index` only for key columns, plus the type's modifiers.
 */
export interface ColumnInfo {
  type: string;
  dims?: number;
  not_null?: boolean;
  pk_index?: number;
  max_length?: number;
  length?: number;
  precision?: number;
  scale?: number;
  fields?: string;
}

export type Schema = Record<string, ColumnInfo>;
