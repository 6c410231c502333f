import { quoteIdentifier, quoteTableIdentifier } from '../pg/table-identifier.js';
import type { FilterNode } from './filter-spec.js';
import { sqlTypeName } from './pg-type.js';

/** The setting that carries `$n` into the snapshot query (COPY takes no bind parameters). */
export function paramSettingName(index: number): string {
  return `sluice.where_param_${index}`;
}

/**
 * Prints a typed where clause as SQL for the snapshot query. Everything is re-printed from the
 * validated tree, fully parenthesised and with every conversion spelled out, so Postgres reads
 * exactly what the evaluator evaluates. Constants are escaped string literals; `$n` values never
 * enter the text: they are read from transaction-local settings set with bound parameters.
 */
export function filterSql(node: FilterNode): string {
  switch (node.op) {
    case 'const':
      return node.value === null
        ? `CAST(NULL AS ${sqlTypeName(node.type)})`
        : `CAST(${stringLiteral(node.value)} AS ${sqlTypeName(node.type)})`;
    case 'param':
      return `CAST(current_setting('${paramSettingName(node.index)}') AS ${sqlTypeName(node.type)})`;
    case 'column':
      // A varchar[] column is text[] to the evaluator; Postgres compares varchar[] with text[]
      // only after this conversion (a no-op for text[] columns).
      return node.type.array && node.type.scalar === 'text'
        ? `CAST(${quoteIdentifier(node.name)} AS text[])`
        : quoteIdentifier(node.name);
    case 'opaque_column':
      return quoteIdentifier(node.name);
    case 'cast':
      // A lenient cast stands for a cross-type comparison operator: left out, Postgres picks it.
      return node.lenient
        ? filterSql(node.arg)
        : `CAST(${filterSql(node.arg)} AS ${sqlTypeName(node.type)})`;
    case 'collate':
      return `(${filterSql(node.arg)} COLLATE "${node.collation}")`;
    case 'compare':
    case 'arithmetic':
    case 'array_op':
      return `(${filterSql(node.left)} ${node.operator} ${filterSql(node.right)})`;
    case 'concat':
      return `(${filterSql(node.left)} || ${filterSql(node.right)})`;
    case 'distinct':
      return `(${filterSql(node.left)} IS ${node.negated ? 'NOT ' : ''}DISTINCT FROM ${filterSql(node.right)})`;
    case 'negate':
      return `(- ${filterSql(node.arg)})`;
    case 'and':
    case 'or':
      return `(${node.args.map(filterSql).join(node.op === 'and' ? ' AND ' : ' OR ')})`;
    case 'not':
      return `(NOT ${filterSql(node.arg)})`;
    case 'is_null':
      return `(${filterSql(node.arg)} IS ${node.negated ? 'NOT ' : ''}NULL)`;
    case 'bool_test':
      return `(${filterSql(node.arg)} IS ${node.negated ? 'NOT ' : ''}${node.test.toUpperCase()})`;
    case 'like': {
      const operator = `${node.negated ? 'NOT ' : ''}${node.caseInsensitive ? 'ILIKE' : 'LIKE'}`;
      const escape = node.escape ? ` ESCAPE ${filterSql(node.escape)}` : '';
      return `(${filterSql(node.arg)} ${operator} ${filterSql(node.pattern)}${escape})`;
    }
    case 'in':
      return `(${filterSql(node.arg)} ${node.negated ? 'NOT ' : ''}IN (${node.list.map(filterSql).join(', ')}))`;
    case 'any':
      return `(${filterSql(node.arg)} = ANY (${filterSql(node.array)}))`;
    case 'array':
      return `CAST(ARRAY[${node.elements.map(filterSql).join(', ')}] AS ${node.type}[])`;
    case 'case_map':
      return `${node.upper ? 'upper' : 'lower'}(${filterSql(node.arg)})`;
    case 'length':
      return `length(${filterSql(node.arg)})`;
    case 'coalesce':
      return `COALESCE(${node.args.map(filterSql).join(', ')})`;
    case 'subquery': {
      const { query } = node;
      const columns = node.columns.map(filterSql).join(', ');
      const where = query.filter ? ` WHERE ${filterSql(query.filter)}` : '';
      return `((${columns}) IN (SELECT ${query.select.map(quoteIdentifier).join(', ')} FROM ${quoteTableIdentifier(query.table)}${where}))`;
    }
  }
}

/** An escape string literal: the same meaning whatever standard_conforming_strings says. */
function stringLiteral(value: string): string {
  return `E'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
