/**
 * A string as an SQL literal. Replication connections speak only the simple query protocol, so
 * what they query by cannot be a bind parameter: it is spliced in, quoted.
 */
export function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
