/**
 * Query option that keeps every value as Postgres' text output (its type's output function),
 * as replication delivers rows: what the where evaluator reads and what subquery results are
 * compared with.
 */
export const RAW_TEXT = { getTypeParser: () => (value: string) => value };
