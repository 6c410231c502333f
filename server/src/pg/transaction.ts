/** A row as Postgres text values keyed by column name (null for SQL NULL). */
export type Row = Record<string, string | null>;

/** A table as described by pgoutput's Relation message. */
export interface RelationInfo {
  oid: number;
  schema: string;
  name: string;
  columns: { name: string; typeOid: number; typeMod: number }[];
  keyColumns: string[];
}

export type Change =
  | { kind: 'insert'; relation: RelationInfo; newRow: Row }
  | { kind: 'update'; relation: RelationInfo; oldRow: Row | undefined; newRow: Row }
  | { kind: 'delete'; relation: RelationInfo; oldRow: Row }
  | { kind: 'truncate'; relations: RelationInfo[] };

/** One committed transaction, delivered whole (docs/architecture.md: whole transactions only). */
export interface Transaction {
  xid: number;
  /** LSN of the commit record: the `tx` of every log offset this transaction produces. */
  commitLsn: bigint;
  /** End of the commit record: acknowledging it tells Postgres not to send this again. */
  endLsn: bigint;
  changes: Change[];
}
