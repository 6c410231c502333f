import type { Row } from '../pg/transaction.js';
import { arithmetic, negate } from './arithmetic.js';
import type { FilterNode } from './filter-spec.js';
import { likeEscape, likeMatches, mapCase } from './text-functions.js';
import type { PgArray } from './pg-array-text.js';
import {
  compareValues,
  convertValue,
  dateForComparison,
  equalValues,
  isEvaluationError,
  valueReader,
  type Value,
} from './pg-values.js';
import type { ScalarType } from './pg-type.js';

type Evaluate = (row: Row) => Value;

/** How a subquery of the clause is evaluated on a row: against its current result. */
export type SubqueryLookup = (node: Extract<FilterNode, { op: 'subquery' }>) => Evaluate;

// The lookup of the compilation under way. compile() is synchronous and recursive through a
// dozen helpers; the lookup is set for one compileNode call only rather than threaded through
// every one of them.
let currentLookup: SubqueryLookup | undefined;

/**
 * A node after the simplification Postgres applies while planning (eval_const_expressions): a
 * value computed once, or a function of the row. This is not an optimisation: it decides which
 * errors are raised. `x + NULL` is NULL without evaluating x, `x AND false` is false whatever x
 * would raise, `true OR 1/0 = 1` is true, and `1/0 = x` fails the whole clause, as it fails
 * planning, whatever the rows.
 */
type Compiled = { constant: true; value: Value } | { constant: false; evaluate: Evaluate };

const constant = (value: Value): Compiled => ({ constant: true, value });
const dynamic = (evaluate: Evaluate): Compiled => ({ constant: false, evaluate });

function evaluator(compiled: Compiled): Evaluate {
  if (!compiled.constant) return compiled.evaluate;
  const { value } = compiled;
  return () => value;
}

/**
 * Turns a typed where clause into a function of a row (Postgres text values by column name)
 * that says whether the row is in the shape: true only when the clause is TRUE, as in a WHERE.
 * NULL and errors Postgres would raise on this row (division by zero, overflow, a malformed
 * LIKE pattern) mean "not in the shape", never a failed stream.
 */
export function compileFilter(
  root: FilterNode,
  subqueries?: SubqueryLookup,
): (row: Row) => boolean {
  let evaluate: Evaluate;
  try {
    evaluate = compileNode(root, subqueries);
  } catch (error) {
    // Postgres would fail the query itself; compileShapeFilter refuses such clauses.
    if (isEvaluationError(error)) return () => false;
    throw error;
  }
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

/**
 * Evaluates to true, false, null (unknown) or throws EvaluationError, as Postgres would. Throws
 * EvaluationError at once when a part that reads no column raises: Postgres computes such parts
 * while planning, so the clause fails whatever the rows.
 */
export function compileNode(node: FilterNode, subqueries?: SubqueryLookup): Evaluate {
  const outer = currentLookup;
  currentLookup = subqueries;
  try {
    return evaluator(compile(node));
  } finally {
    currentLookup = outer;
  }
}

function compile(node: FilterNode): Compiled {
  switch (node.op) {
    case 'const':
    case 'param':
      // Bound parameters are constants to the planner too (PARAM_FLAG_CONST).
      return constant(node.value === null ? null : valueReader(node.type)(node.value));
    case 'column': {
      const read = valueReader(node.type);
      const { name } = node;
      return dynamic((row) => {
        const text = row[name];
        return text === null || text === undefined ? null : read(text);
      });
    }
    case 'opaque_column': {
      const { name } = node;
      return dynamic((row) => row[name] ?? null);
    }
    case 'cast':
      return compileCast(node);
    case 'collate':
      return compile(node.arg);
    case 'compare':
      return compileCompare(node);
    case 'distinct':
      return compileDistinct(node);
    case 'arithmetic': {
      const { operator, type } = node;
      return strict([compile(node.left), compile(node.right)], ([a, b]) =>
        arithmetic(type, operator, a, b),
      );
    }
    case 'negate':
      return strict([compile(node.arg)], ([value]) => negate(node.type, value));
    case 'concat':
      return strict(
        [compile(node.left), compile(node.right)],
        ([a, b]) => (a as string) + (b as string),
      );
    case 'and':
    case 'or':
      return compileJunction(node.op, node.args);
    case 'not':
      return nonStrict(compile(node.arg), (value) => (value === null ? null : !value));
    case 'is_null':
      return nonStrict(compile(node.arg), (value) => (value === null) !== node.negated);
    case 'bool_test': {
      const want = node.test === 'unknown' ? null : node.test === 'true';
      return nonStrict(compile(node.arg), (value) => (value === want) !== node.negated);
    }
    case 'like':
      return compileLike(node);
    case 'in':
      return compileIn(node);
    case 'any':
      return compileAny(node);
    case 'array_op':
      return compileArrayOperator(node);
    case 'array':
      return compileArray(node.elements);
    case 'case_map':
      return strict([compile(node.arg)], ([value]) =>
        mapCase(value as string, node.upper, node.text),
      );
    case 'length':
      // Characters, not UTF-16 units: code points above U+FFFF count once.
      return strict([compile(node.arg)], ([value]) => BigInt([...(value as string)].length));
    case 'coalesce':
      return compileCoalesce(node.args);
    case 'subquery': {
      const lookup = currentLookup;
      // Validation compiles a clause before any result exists: it is never evaluated then.
      if (!lookup) return dynamic(() => subqueryWithoutResult());
      return dynamic(lookup(node));
    }
  }
}

function subqueryWithoutResult(): never {
  throw new Error('a subquery was evaluated before its result was read');
}

/** A function of one operand that sees NULL too (NOT, IS NULL): folded when it is constant. */
function nonStrict(arg: Compiled, apply: (value: Value) => Value): Compiled {
  if (arg.constant) return constant(apply(arg.value));
  const { evaluate } = arg;
  return dynamic((row) => apply(evaluate(row)));
}

/**
 * A strict function (an operator, a cast, lower()) as Postgres plans and runs it: a constant
 * NULL operand makes it NULL without evaluating the others; constant operands of an immutable
 * function are computed once; otherwise every operand is evaluated, in order, before NULLs are
 * looked at, so an error in any operand is raised even when another one is NULL.
 */
function strict(args: Compiled[], apply: (values: Value[]) => Value, immutable = true): Compiled {
  if (args.some((arg) => arg.constant && arg.value === null)) return constant(null);
  if (immutable && args.every((arg) => arg.constant)) {
    return constant(apply(args.map((arg) => (arg as { value: Value }).value)));
  }
  const evaluators = args.map(evaluator);
  return dynamic((row) => {
    const values = evaluators.map((evaluate) => evaluate(row));
    return values.includes(null) ? null : apply(values);
  });
}

function compileCast(node: Extract<FilterNode, { op: 'cast' }>): Compiled {
  const from = staticType(node.arg);
  const to = node.type.scalar;
  const convert =
    node.lenient && from === 'date' && to !== 'date'
      ? (value: Value) => dateForComparison(value as number)
      : (value: Value) => convertValue(from, to, value);
  // Conversions to or from timestamptz depend on TimeZone: Postgres marks them stable and
  // leaves them to run time even with a constant operand (a failing one then fails each row).
  const immutable = from === to || (from !== 'timestamptz' && to !== 'timestamptz');
  return strict([compile(node.arg)], ([value]) => convert(value), immutable);
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

function compileCompare(node: Extract<FilterNode, { op: 'compare' }>): Compiled {
  const { scalar, array } = node.domain;
  const test = comparisonTest(node.operator);
  const equal = equality(scalar, array);
  const ordered = node.operator !== '=' && node.operator !== '<>';
  return strict([compile(node.left), compile(node.right)], ([a, b]) =>
    test(ordered ? compareValues(scalar, a, b) : equal(a, b) ? 0 : 1),
  );
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

/** IS [NOT] DISTINCT FROM: both operands are evaluated; folded when both are constant. */
function compileDistinct(node: Extract<FilterNode, { op: 'distinct' }>): Compiled {
  const equal = equality(node.domain.scalar, node.domain.array);
  const distinct = (a: Value, b: Value) => {
    const same = a === null || b === null ? a === b : equal(a, b);
    return node.negated ? same : !same;
  };
  const left = compile(node.left);
  const right = compile(node.right);
  if (left.constant && right.constant) return constant(distinct(left.value, right.value));
  const [l, r] = [evaluator(left), evaluator(right)];
  return dynamic((row) => {
    const a = l(row);
    return distinct(a, r(row));
  });
}

/**
 * AND and OR stop at the first deciding operand and are NULL when only NULLs are left. While
 * planning, a constant deciding operand decides the whole junction (later operands are not even
 * simplified, so their errors never happen), other constants drop out.
 */
function compileJunction(op: 'and' | 'or', args: FilterNode[]): Compiled {
  const decides = op === 'or';
  const kept: Evaluate[] = [];
  let sawNull = false;
  for (const arg of args) {
    const compiled = compile(arg);
    if (!compiled.constant) kept.push(compiled.evaluate);
    else if (compiled.value === null) sawNull = true;
    else if (compiled.value === decides) return constant(decides);
  }
  if (kept.length === 0) return constant(sawNull ? null : !decides);
  if (kept.length === 1 && !sawNull) return dynamic(kept[0]!);
  return dynamic((row) => {
    let unknown = sawNull;
    for (const arg of kept) {
      const value = arg(row);
      if (value === null) unknown = true;
      else if (value === decides) return decides;
    }
    return unknown ? null : !decides;
  });
}

/**
 * `x LIKE p ESCAPE e` is textlike(x, like_escape(p, e)) in Postgres: two strict functions, the
 * pattern converted to backslash form first (which is where a bad escape string fails, even for
 * a NULL x), and ILIKE lowercases text and converted pattern before matching.
 */
function compileLike(node: Extract<FilterNode, { op: 'like' }>): Compiled {
  const pattern = node.escape
    ? strict([compile(node.pattern), compile(node.escape)], ([p, e]) =>
        likeEscape(p as string, e as string),
      )
    : compile(node.pattern);
  const fold = (text: string) => (node.caseInsensitive ? mapCase(text, false, node.text) : text);
  return strict(
    [compile(node.arg), pattern],
    ([text, p]) => likeMatches(fold(text as string), fold(p as string)) !== node.negated,
  );
}

/**
 * `x IN (a, b)` over constants (the compiler leaves items reading columns to separate `=`) is
 * Postgres' `x = ANY (ARRAY[a, b])`: x and every item are evaluated before anything is compared,
 * and the answer is NULL when nothing matched but something was NULL.
 */
function compileIn(node: Extract<FilterNode, { op: 'in' }>): Compiled {
  const equal = equality(node.domain.scalar, node.domain.array);
  const test = (value: Value, items: Value[]) => {
    if (value === null) return null;
    let sawNull = false;
    for (const item of items) {
      if (item === null) sawNull = true;
      else if (equal(value, item)) return !node.negated;
    }
    return sawNull ? null : node.negated;
  };
  const arg = compile(node.arg);
  const list = node.list.map(compile);
  if (arg.constant && list.every((item) => item.constant)) {
    return constant(
      test(
        arg.value,
        list.map((item) => (item as { value: Value }).value),
      ),
    );
  }
  const evaluate = evaluator(arg);
  const items = list.map(evaluator);
  return dynamic((row) => {
    const value = evaluate(row);
    return test(
      value,
      items.map((item) => item(row)),
    );
  });
}

/** ExecEvalScalarArrayOp: the operand and the array are both evaluated before any check. */
function compileAny(node: Extract<FilterNode, { op: 'any' }>): Compiled {
  const { domain } = node;
  const convert = elementConversion(node.elementType, domain);
  const array = nonStrict(compile(node.array), (list) =>
    list === null
      ? null
      : { ...(list as PgArray<Value>), elements: convert(list as PgArray<Value>) },
  );
  const test = (value: Value, list: PgArray<Value> | null) => {
    if (list === null) return null;
    // An empty array makes ANY false even for a NULL operand.
    if (list.elements.length === 0) return false;
    if (value === null) return null;
    let sawNull = false;
    for (const element of list.elements) {
      if (element === null) sawNull = true;
      else if (equalValues(domain, value, element)) return true;
    }
    return sawNull ? null : false;
  };
  const arg = compile(node.arg);
  if (arg.constant && array.constant) {
    return constant(test(arg.value, array.value as PgArray<Value> | null));
  }
  const [evaluate, elements] = [evaluator(arg), evaluator(array)];
  return dynamic((row) => {
    const value = evaluate(row);
    return test(value, elements(row) as PgArray<Value> | null);
  });
}

/**
 * The elements of an `= ANY` array in the comparison type. Postgres coerces the whole array
 * before comparing when no cross-type operator exists (numeric[] → float8[] can fail on any
 * element, matched or not); dates meet timestamps through cross-type operators instead.
 */
function elementConversion(from: ScalarType, to: ScalarType): (list: PgArray<Value>) => Value[] {
  if (from === to) return (list) => list.elements;
  const convert =
    from === 'date'
      ? (value: Value) => dateForComparison(value as number)
      : (value: Value) => convertValue(from, to, value);
  return (list) => list.elements.map((element) => (element === null ? null : convert(element)));
}

function compileArrayOperator(node: Extract<FilterNode, { op: 'array_op' }>): Compiled {
  const { domain } = node;
  const matches = (x: Value, list: PgArray<Value>) =>
    list.elements.some((y) => y !== null && equalValues(domain, x, y));
  /** Whether every element of `inner` occurs in `outer`: NULL elements never match. */
  const contains = (outer: PgArray<Value>, inner: PgArray<Value>) =>
    inner.elements.every((x) => x !== null && matches(x, outer));
  return strict([compile(node.left), compile(node.right)], ([left, right]) => {
    const a = left as PgArray<Value>;
    const b = right as PgArray<Value>;
    switch (node.operator) {
      case '@>':
        return contains(a, b);
      case '<@':
        return contains(b, a);
      case '&&':
        return a.elements.some((x) => x !== null && matches(x, b));
    }
  });
}

/** ARRAY[…]: one dimension from 1, or no dimensions at all when empty (like '{}'). */
function compileArray(elements: FilterNode[]): Compiled {
  const build = (values: Value[]): PgArray<Value> =>
    values.length === 0
      ? { dims: [], lowerBounds: [], elements: [] }
      : { dims: [values.length], lowerBounds: [1], elements: values };
  const compiled = elements.map(compile);
  if (compiled.every((element) => element.constant)) {
    return constant(build(compiled.map((element) => (element as { value: Value }).value)));
  }
  const evaluators = compiled.map(evaluator);
  return dynamic((row) => build(evaluators.map((evaluate) => evaluate(row))));
}

/**
 * COALESCE returns its first non-NULL operand. While planning, constant NULL operands drop out
 * and a constant non-NULL one ends the list (later operands are never reached, nor simplified).
 */
function compileCoalesce(args: FilterNode[]): Compiled {
  const kept: Evaluate[] = [];
  for (const arg of args) {
    const compiled = compile(arg);
    if (!compiled.constant) {
      kept.push(compiled.evaluate);
    } else if (compiled.value !== null) {
      if (kept.length === 0) return compiled;
      kept.push(evaluator(compiled));
      break;
    }
  }
  if (kept.length === 0) return constant(null);
  return dynamic((row) => {
    for (const arg of kept) {
      const value = arg(row);
      if (value !== null) return value;
    }
    return null;
  });
}
