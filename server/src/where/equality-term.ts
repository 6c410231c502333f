import type { Row } from '../pg/transaction.js';
import type { FilterNode } from './filter-spec.js';
import { numericEqualityKey, type PgNumeric } from './pg-numeric.js';
import { isInteger, type ScalarType } from './pg-type.js';
import { convertValue, valueReader, type Value } from './pg-values.js';

/**
 * A `column = constant` (or `column IN (constants)`) that a row must satisfy to be in a shape:
 * the shape router indexes shapes by it, so a change only meets the shapes whose constant equals
 * the row's value. `keyOf` turns a row's value into the same key as the constants'.
 */
export interface EqualityTerm {
  column: string;
  /** Column type and comparison type: shapes share an index only when both agree. */
  signature: string;
  keys: string[];
  keyOf(row: Row): string | undefined;
}

// Types whose equality is exactly equality of a canonical string. Floats are left out: their
// equality (NaN = NaN, 0 = -0) is not worth the subtlety for an index.
const KEYED: Partial<Record<ScalarType, (value: Value) => string>> = {
  int2: (v) => (v as bigint).toString(),
  int4: (v) => (v as bigint).toString(),
  int8: (v) => (v as bigint).toString(),
  numeric: (v) => numericEqualityKey(v as PgNumeric),
  text: (v) => v as string,
  uuid: (v) => v as string,
  bool: (v) => (v ? 't' : 'f'),
  date: (v) => String(v),
  timestamp: (v) => String(v),
  timestamptz: (v) => String(v),
};

/** The first equality term of a clause that is a term or an AND of them, if there is one. */
export function equalityTerm(root: FilterNode): EqualityTerm | undefined {
  if (root.op === 'and') {
    for (const arg of root.args) {
      const term = equalityTerm(arg);
      if (term) return term;
    }
    return undefined;
  }
  if (root.op === 'compare' && root.operator === '=' && !root.domain.array) {
    return (
      term(root.left, [root.right], root.domain.scalar) ??
      term(root.right, [root.left], root.domain.scalar)
    );
  }
  if (root.op === 'in' && !root.negated && !root.domain.array) {
    return term(root.arg, root.list, root.domain.scalar);
  }
  return undefined;
}

function term(
  side: FilterNode,
  constants: FilterNode[],
  domain: ScalarType,
): EqualityTerm | undefined {
  const key = KEYED[domain];
  const column = side.op === 'cast' ? side.arg : side;
  if (!key || column.op !== 'column' || column.type.array) return undefined;
  const columnType = column.type.scalar;
  // Only conversions that keep equality exact: the same type, or integer to integer or numeric
  // (a value an integer cast refuses raises in the clause too, and matches nothing either way).
  if (side !== column && !(isInteger(columnType) && (isInteger(domain) || domain === 'numeric'))) {
    return undefined;
  }
  const keys: string[] = [];
  for (const side of constants) {
    // `bigint_column = 5` compares with 5::int8: the constant may be converted too.
    const constant = side.op === 'cast' ? side.arg : side;
    if ((constant.op !== 'const' && constant.op !== 'param') || constant.type.array)
      return undefined;
    // NULL equals nothing: it adds no key.
    if (constant.value === null) continue;
    const value = valueReader(constant.type)(constant.value);
    keys.push(key(convertValue(constant.type.scalar, domain, value)));
  }
  const read = valueReader(column.type);
  const { name } = column;
  return {
    column: name,
    signature: `${columnType}:${domain}`,
    keys,
    keyOf(row) {
      const text = row[name];
      if (text === null || text === undefined) return undefined;
      try {
        return key(convertValue(columnType, domain, read(text)));
      } catch {
        // A value the conversion refuses cannot equal any constant.
        return undefined;
      }
    },
  };
}
