import type { Row } from '../replication/transaction.js';
import { arithmetic, negate } from './arithmetic.js';
import type { FilterNode, TextRules } from './filter-spec.js';
import { likeMatcher, mapCase } from './text-functions.js';
import type { PgArray } from './pg-array-text.js';
import {
  compareValues,
  convertValue,
  equalValues,
  valueReader,
  type Value,
} from './pg-values.js';
import type { ScalarType } from './pg-type.js';

type Evaluate = (row: Row) => Value;

/**
 * Turns a typed where clause into a function of a row (Postgres text values by column name)
 * that says whether the row is in the shape: true only when the clause is TRUE, as in a WHERE.
 * NULL and errors Postgres would raise on this row (division by zero, overflow, a malformed
 * LIKE pattern) mean "not in the shape", never a failed stream.
 */
export function compileFilter(root: FilterNode): (row: Row) => boolean {
  const evaluate = compileNode(root);
  return (row) => {
    try {
      return evaluate(row) === true;
    } catch {
      // Errors Postgres would raise mean "not in the shape". Any other error is a bug, and the
      // differential test hunts those; here it must not stop replication for every shape, and
      // rethrowing would replay the same row forever.
      return false;
    }
  };
}

/** Evaluates to true, false, null (unknown) or throws EvaluationError, as Postgres would. */
export function compileNode(node: FilterNode): Evaluate {
  switch (node.op) {
    case 'const':
    case 'param': {
      const value = node.value === null ? null : valueReader(node.type)(node.value);
      return () => value;
    }
    case 'column': {
      const read = valueReader(node.type);
      const { name } = node;
      return (row) => {
        const text = row[name];
        return text === null || text === undefined ? null : read(text);
      };
    }
    case 'opaque_column': {
      const { name } = node;
      return (row) => row[name] ?? null;
    }
    case 'cast': {
      const arg = compileNode(node.arg);
      const from = staticType(node.arg);
      const to = node.type.scalar;
      return (row) => {
        const value = arg(row);
        return value === null ? null : convertValue(from, to, value);
      };
    }
    case 'collate':
      return compileNode(node.arg);
    case 'compare':
      return compileCompare(node);
    case 'distinct': {
      const [left, right] = [compileNode(node.left), compileNode(node.right)];
      const equal = equality(node.domain.scalar, node.domain.array);
      return (row) => {
        const a = left(row);
        const b = right(row);
        const same = a === null || b === null ? a === b : equal(a, b);
        return node.negated ? same : !same;
      };
    }
    case 'arithmetic': {
      const [left, right] = [compileNode(node.left), compileNode(node.right)];
      const { operator, type } = node;
      return (row) => {
        const a = left(row);
        if (a === null) return null;
        const b = right(row);
        return b === null ? null : arithmetic(type, operator, a, b);
      };
    }
    case 'negate': {
      const arg = compileNode(node.arg);
      return (row) => {
        const value = arg(row);
        return value === null ? null : negate(node.type, value);
      };
    }
    case 'concat': {
      const [left, right] = [compileNode(node.left), compileNode(node.right)];
      return (row) => {
        const a = left(row);
        if (a === null) return null;
        const b = right(row);
        return b === null ? null : (a as string) + (b as string);
      };
    }
    case 'and':
    case 'or':
      return compileJunction(node.op, node.args.map(compileNode));
    case 'not': {
      const arg = compileNode(node.arg);
      return (row) => {
        const value = arg(row);
        return value === null ? null : !value;
      };
    }
    case 'is_null': {
      const arg = compileNode(node.arg);
      return (row) => (arg(row) === null) !== node.negated;
    }
    case 'bool_test': {
      const arg = compileNode(node.arg);
      const want = node.test === 'unknown' ? null : node.test === 'true';
      return (row) => (arg(row) === want) !== node.negated;
    }
    case 'like':
      return compileLike(node);
    case 'in':
      return compileIn(node);
    case 'any':
      return compileAny(node);
    case 'array_op':
      return compileArrayOperator(node);
    case 'array': {
      const elements = node.elements.map(compileNode);
      return (row): PgArray<Value> => ({
        dims: [elements.length],
        lowerBounds: [1],
        elements: elements.map((element) => element(row)),
      });
    }
    case 'case_map': {
      const arg = compileNode(node.arg);
      return (row) => {
        const value = arg(row);
        return value === null ? null : mapCase(value as string, node.upper, node.text);
      };
    }
    case 'length': {
      const arg = compileNode(node.arg);
      return (row) => {
        const value = arg(row);
        if (value === null) return null;
        // Characters, not UTF-16 units: code points above U+FFFF count once.
        return BigInt([...(value as string)].length);
      };
    }
    case 'coalesce': {
      const args = node.args.map(compileNode);
      return (row) => {
        for (const arg of args) {
          const value = arg(row);
          if (value !== null) return value;
        }
        return null;
      };
    }
  }
}

/** The scalar type a node evaluates to (only asked of operands of casts). */
function staticType(node: FilterNode): ScalarType {
  switch (node.op) {
    case 'const':
    case 'param':
    case 'column':
    case 'cast':
      return node.type.scalar;
    case 'arithmetic':
    case 'negate':
      return node.type;
    case 'coalesce':
      return node.type.scalar;
    case 'length':
      return 'int4';
    case 'concat':
    case 'case_map':
    case 'collate':
      return 'text';
    default:
      return 'bool';
  }
}

function equality(type: ScalarType, array: boolean): (a: Value, b: Value) => boolean {
  if (!array) return (a, b) => equalValues(type, a, b);
  // array_eq: same dimensions and bounds, elements equal, NULL elements equal to each other.
  return (a, b) => {
    const x = a as PgArray<Value>;
    const y = b as PgArray<Value>;
    if (x.dims.join() !== y.dims.join() || x.lowerBounds.join() !== y.lowerBounds.join())
      return false;
    return x.elements.every((element, i) => {
      const other = y.elements[i];
      return element === null || other === null || other === undefined
        ? element === other
        : equalValues(type, element, other);
    });
  };
}

function compileCompare(node: Extract<FilterNode, { op: 'compare' }>): Evaluate {
  const [left, right] = [compileNode(node.left), compileNode(node.right)];
  const { scalar, array } = node.domain;
  const test = comparisonTest(node.operator);
  const equal = equality(scalar, array);
  const ordered = node.operator !== '=' && node.operator !== '<>';
  return (row) => {
    const a = left(row);
    if (a === null) return null;
    const b = right(row);
    if (b === null) return null;
    return test(ordered ? compareValues(scalar, a, b) : equal(a, b) ? 0 : 1);
  };
}

function comparisonTest(operator: string): (order: number) => boolean {
  switch (operator) {
    case '=':
      return (order) => order === 0;
    case '<>':
      return (order) => order !== 0;
    case '<':
      return (order) => order < 0;
    case '<=':
      return (order) => order <= 0;
    case '>':
      return (order) => order > 0;
    default:
      return (order) => order >= 0;
  }
}

/** AND and OR stop at the first deciding operand and are NULL when only NULLs are left. */
function compileJunction(op: 'and' | 'or', args: Evaluate[]): Evaluate {
  const decides = op === 'or';
  return (row) => {
    let sawNull = false;
    for (const arg of args) {
      const value = arg(row);
      if (value === null) sawNull = true;
      else if (value === decides) return decides;
    }
    return sawNull ? null : !decides;
  };
}

function compileLike(node: Extract<FilterNode, { op: 'like' }>): Evaluate {
  const arg = compileNode(node.arg);
  const pattern = compileNode(node.pattern);
  const escape = node.escape ? compileNode(node.escape) : () => '\\';
  const rules: TextRules = node.text;
  return (row) => {
    const value = arg(row);
    const p = pattern(row);
    const e = escape(row);
    if (value === null || p === null || e === null) return null;
    const fold = (s: string) => (node.caseInsensitive ? mapCase(s, false, rules) : s);
    const matches = likeMatcher(fold(p as string), e as string)(fold(value as string));
    return matches !== node.negated;
  };
}

/** `x IN (a, b)` is `x = a OR x = b`: NULL when nothing matched but something was NULL. */
function compileIn(node: Extract<FilterNode, { op: 'in' }>): Evaluate {
  const arg = compileNode(node.arg);
  const list = node.list.map(compileNode);
  const equal = equality(node.domain.scalar, node.domain.array);
  return (row) => {
    const value = arg(row);
    let sawNull = value === null;
    if (value !== null) {
      for (const item of list) {
        const candidate = item(row);
        if (candidate === null) sawNull = true;
        else if (equal(value, candidate)) return !node.negated;
      }
    }
    return sawNull ? null : node.negated;
  };
}

function compileAny(node: Extract<FilterNode, { op: 'any' }>): Evaluate {
  const arg = compileNode(node.arg);
  const array = compileNode(node.array);
  const { domain, elementType } = node;
  return (row) => {
    const list = array(row) as PgArray<Value> | null;
    if (list === null) return null;
    // An empty array makes ANY false even for a NULL operand (ExecEvalScalarArrayOp).
    if (list.elements.length === 0) return false;
    const value = arg(row);
    if (value === null) return null;
    let sawNull = false;
    for (const element of list.elements) {
      if (element === null) sawNull = true;
      else if (equalValues(domain, value, convertValue(elementType, domain, element))) return true;
    }
    return sawNull ? null : false;
  };
}

function compileArrayOperator(node: Extract<FilterNode, { op: 'array_op' }>): Evaluate {
  const [left, right] = [compileNode(node.left), compileNode(node.right)];
  const { domain } = node;
  /** Whether every non-NULL-free element of `inner` occurs in `outer`; NULLs never match. */
  const contains = (outer: PgArray<Value>, inner: PgArray<Value>) =>
    inner.elements.every(
      (x) => x !== null && outer.elements.some((y) => y !== null && equalValues(domain, x, y)),
    );
  return (row) => {
    const a = left(row) as PgArray<Value> | null;
    if (a === null) return null;
    const b = right(row) as PgArray<Value> | null;
    if (b === null) return null;
    switch (node.operator) {
      case '@>':
        return contains(a, b);
      case '<@':
        return contains(b, a);
      case '&&':
        return a.elements.some(
          (x) => x !== null && b.elements.some((y) => y !== null && equalValues(domain, x, y)),
        );
    }
  };
}
