import type { FilterNode, TextRules } from './filter-spec.js';
import {
  arrayOf,
  castSupported,
  categoryOf,
  commonScalarType,
  comparisonDomain,
  displayTypeName,
  isFloat,
  numberDomain,
  sameType,
  scalar,
  scalarTypeNamed,
  type PgType,
  type ScalarType,
} from './pg-type.js';
import type { WhereTable } from './where-columns.js';
import type { SyntaxNode } from './where-parser.js';
import { shapeInvalid } from '../errors/sluice-error.js';

/** A literal or `$n` whose type the context decides, as Postgres types `'42'` or `$1`. */
interface Untyped {
  untyped: true;
  text: string | null;
  param: number | undefined;
}

/**
 * A typed expression; `collation` is set for text that carries one (a column or COLLATE).
 * `varchar` says Postgres' type is varchar (or varchar[]): the same as text to every operator
 * but the array ones, for which varchar[] and text[] are different types.
 */
interface Typed {
  untyped?: false;
  node: FilterNode;
  type: PgType;
  collation?: Collation;
  varchar?: boolean;
}

/** A collation an expression carries: `explicit` from COLLATE, else a column's (implicit). */
interface Collation {
  rules: TextRules;
  deterministic: boolean;
  explicit: boolean;
  name: string;
  /** The database default, which any other implicit collation overrides. */
  isDefault?: boolean;
}

/** How an untyped operand settles: `lenient` for operands of comparisons (see FilterNode). */
interface Settling {
  lenient?: boolean;
  varchar?: boolean;
}

type Expr = Typed | Untyped;

/** A constant whose text Postgres must read (and print back) as `type`. */
export interface PendingConstant {
  node: Extract<FilterNode, { op: 'const' | 'param' }>;
  text: string;
}

const BOOL = scalar('bool');
const TEXT = scalar('text');

const fail = (message: string): never => {
  throw shapeInvalid('where', message);
};

// Names for parse-tree nodes outside the supported subset, so the 400 says what was refused.
const CONSTRUCTS: Record<string, string> = {
  SubLink: 'subqueries',
  CaseExpr: 'CASE expressions',
  RowExpr: 'row constructors',
  SQLValueFunction: 'CURRENT_DATE, CURRENT_USER and similar functions',
  A_Indirection: 'subscripts and field selection',
  MinMaxExpr: 'GREATEST and LEAST',
  XmlExpr: 'XML functions',
  GroupingFunc: 'GROUPING',
  NullIfExpr: 'NULLIF',
  NamedArgExpr: 'named arguments',
  A_Star: '*',
};

/**
 * Types a where clause's parse tree against a table, the way Postgres would type it, and
 * refuses everything outside the supported subset with a message naming the construct.
 * Constants are returned in `constants` for Postgres to canonicalise before use.
 */
export function compileWhere(
  tree: SyntaxNode,
  table: WhereTable,
  params: readonly string[],
): { root: FilterNode; constants: PendingConstant[]; usedParams: Set<number> } {
  const constants: PendingConstant[] = [];
  const usedParams = new Set<number>();
  // The type each `$n` got where the context first typed it: like Postgres, later uses of the
  // same parameter are of that type, not untyped again.
  const paramTypes = new Map<number, { type: PgType; varchar: boolean }>();

  const settle = (expr: Expr, type: PgType, how: Settling = {}): Typed => {
    if (!expr.untyped) return convert(expr, type, how.lenient === true);
    const varchar = how.varchar === true && type.scalar === 'text';
    if (expr.text === null) {
      return { node: { op: 'const', type, value: null }, type, varchar };
    }
    if (expr.param !== undefined && !paramTypes.has(expr.param)) {
      paramTypes.set(expr.param, { type, varchar });
    }
    const node: PendingConstant['node'] =
      expr.param === undefined
        ? { op: 'const', type, value: expr.text }
        : { op: 'param', index: expr.param, type, value: expr.text };
    constants.push({ node, text: expr.text });
    return { node, type, varchar };
  };

  /**
   * An implicit conversion Postgres would apply to reach `type`. In a comparison (`lenient`)
   * a date meets a timestamp through a cross-type operator, which does not raise for dates
   * past the last timestamp.
   */
  const convert = (expr: Typed, type: PgType, lenient = false): Typed => {
    if (sameType(expr.type, type)) return expr;
    if (expr.type.array || type.array || !castSupported(expr.type.scalar, type.scalar)) {
      fail(`cannot use ${display(expr)} as ${displayTypeName(type)}`);
    }
    const node: FilterNode =
      lenient && expr.type.scalar === 'date'
        ? { op: 'cast', type, arg: expr.node, lenient: true }
        : { op: 'cast', type, arg: expr.node };
    return { node, type, collation: expr.collation };
  };

  const typed = (expr: Expr): Typed => (expr.untyped ? settle(expr, TEXT) : expr);

  const boolean = (node: SyntaxNode, what: string): FilterNode => {
    const expr = visit(node);
    if (!expr.untyped && !sameType(expr.type, BOOL)) {
      fail(`argument of ${what} must be type boolean, not type ${displayTypeName(expr.type)}`);
    }
    return settle(expr, BOOL).node;
  };

  /**
   * The collation operands combine to, derived as Postgres does at every node, whether or not
   * the node compares text: an explicit collation wins, and two different explicit ones are an
   * error; otherwise a non-default one wins over the default. Two different non-default
   * implicit ones leave Postgres without a collation, refused here.
   */
  const textRulesOf = (...exprs: Typed[]): Collation | undefined => {
    const collations = exprs.flatMap((e) => (e.collation ? [e.collation] : []));
    const explicit = collations.filter((c) => c.explicit);
    const candidates = explicit.length > 0 ? explicit : collations.filter((c) => !c.isDefault);
    const first = candidates[0];
    const other = candidates.find((c) => c.name !== first?.name);
    if (first && other) {
      if (explicit.length > 0) {
        fail(`collation mismatch between explicit collations "${first.name}" and "${other.name}"`);
      }
      fail(
        `combining text of collations "${first.name}" and "${other.name}" is not supported: add COLLATE`,
      );
    }
    return first ?? collations[0];
  };

  const rulesOrDefault = (...exprs: Typed[]) => {
    const collation = textRulesOf(...exprs);
    return {
      rules: collation?.rules ?? table.defaultText,
      deterministic: collation?.deterministic ?? true,
      name: collation?.name ?? 'default',
    };
  };

  /**
   * The type the two operands of a comparison meet in, as Postgres' operator resolution picks
   * it: numbers at the wider type (int4 with float4 at float8), dates and timestamps at the
   * later type, arrays only with the very same type (varchar[] and text[] do not meet).
   */
  const operatorType = (operator: string, left: Expr, right: Expr) => {
    const [a, b] = [left, right].filter((e): e is Typed => !e.untyped);
    if (!a) return { type: TEXT, varchar: false };
    if (!b) return { type: a.type, varchar: a.varchar === true };
    const mismatch = () => fail(`operator does not exist: ${display(a)} ${operator} ${display(b)}`);
    if (a.type.array || b.type.array) {
      if (!sameType(a.type, b.type) || (a.varchar === true) !== (b.varchar === true)) mismatch();
      return { type: a.type, varchar: a.varchar === true };
    }
    const domain = comparisonDomain(a.type.scalar, b.type.scalar);
    if (domain === undefined) mismatch();
    return { type: scalar(domain!), varchar: false };
  };

  /**
   * The type the values of a list meet in (IN lists, ARRAY[…], COALESCE), as
   * select_common_type picks it: the first typed value's type, moved to any later type it
   * converts to implicitly (int4 and float4 meet at float4 here). Undefined when they cannot.
   */
  const tryCommonType = (exprs: Expr[]) => {
    let first: Typed | undefined;
    let type: PgType = TEXT;
    for (const expr of exprs) {
      if (expr.untyped) continue;
      if (!first) {
        first = expr;
        type = expr.type;
      } else if (type.array || expr.type.array) {
        if (!sameType(type, expr.type) || (first.varchar === true) !== (expr.varchar === true))
          return undefined;
      } else {
        const common = commonScalarType(type.scalar, expr.type.scalar);
        if (common === undefined) return undefined;
        type = scalar(common);
      }
    }
    // varchar and text convert to each other implicitly: the first one's type stays.
    return { type, varchar: first?.varchar === true && type.scalar === 'text' };
  };

  const commonType = (exprs: Expr[], what: string) => {
    const common = tryCommonType(exprs);
    if (!common) {
      const types = exprs.filter((e): e is Typed => !e.untyped).map(display);
      fail(`${what} types ${[...new Set(types)].join(' and ')} cannot be matched`);
    }
    return common!;
  };

  const compare = (operator: string, left: Expr, right: Expr): FilterNode => {
    const { type: domain, varchar } = operatorType(operator, left, right);
    const l = settle(left, domain, { lenient: true, varchar });
    const r = settle(right, domain, { lenient: true, varchar });
    const ordering = operator !== '=' && operator !== '<>';
    if (domain.array && ordering) fail(`ordering arrays with ${operator} is not supported`);
    let text: TextRules | undefined;
    if (domain.scalar === 'text') {
      const { rules, deterministic, name } = rulesOrDefault(l, r);
      if (!deterministic)
        fail(`comparing text under the nondeterministic collation "${name}" is not supported`);
      if (ordering && !rules.codePointOrder) {
        fail(
          `ordering text under collation "${name}" is not supported: add COLLATE "C" to compare by code point`,
        );
      }
      text = rules;
    }
    return {
      op: 'compare',
      operator: operator as '=',
      domain,
      text,
      left: l.node,
      right: r.node,
    };
  };

  const column = (node: SyntaxNode, nullTest = false): Typed => {
    const fields = (node.fields as SyntaxNode[] | undefined) ?? [];
    if (fields.length !== 1 || !fields[0]?.String) {
      fail('qualified column references are not supported: use the plain column name');
    }
    const name = (fields[0]!.String as { sval: string }).sval;
    const info = table.columns.get(name);
    if (!info) fail(`column "${name}" does not exist in ${table.name}`);
    if (info!.generated) {
      fail(`generated column "${name}" is not supported: Postgres does not replicate it`);
    }
    if (!info!.type) {
      if (!nullTest) {
        fail(
          `column "${name}" has type ${info!.typeName}, which where clauses can only test with IS [NOT] NULL`,
        );
      }
      // The type is never looked at: IS NULL is the only operator reached.
      return { node: { op: 'opaque_column', name }, type: TEXT };
    }
    const type = info!.type;
    return {
      node: { op: 'column', name, type },
      type,
      varchar: info!.varchar,
      collation:
        type.scalar === 'text'
          ? {
              rules: info!.text,
              deterministic: info!.deterministic,
              explicit: false,
              name: info!.collation,
              isDefault: info!.defaultCollation,
            }
          : undefined,
    };
  };

  const constant = (node: SyntaxNode): Expr => {
    if (node.isnull) return { untyped: true, text: null, param: undefined };
    if (node.sval)
      return { untyped: true, text: (node.sval as { sval?: string }).sval ?? '', param: undefined };
    if (node.boolval) {
      const value = (node.boolval as { boolval?: boolean }).boolval === true;
      return settle({ untyped: true, text: value ? 't' : 'f', param: undefined }, BOOL);
    }
    if (node.ival) {
      const value = (node.ival as { ival?: number }).ival ?? 0;
      return settleLiteral(String(value), 'int4');
    }
    if (node.fval) {
      // Integers arrive here too when their text is not a plain int4 (-2147483648, after the
      // parser negated 2147483648, or 0x7fff_ffff): Postgres makes them int4 or int8 when they
      // fit, as make_const does.
      const text = (node.fval as { fval: string }).fval;
      const integer = integerLiteral(text);
      if (integer !== undefined && integer >= -(2n ** 31n) && integer < 2n ** 31n) {
        return settleLiteral(integer.toString(), 'int4');
      }
      if (integer !== undefined && integer >= -(2n ** 63n) && integer < 2n ** 63n) {
        return settleLiteral(integer.toString(), 'int8');
      }
      return settleLiteral(text, 'numeric');
    }
    return fail('bit-string constants are not supported');
  };

  const settleLiteral = (text: string, type: ScalarType): Typed =>
    settle({ untyped: true, text, param: undefined }, scalar(type));

  const typeCast = (node: SyntaxNode): Typed => {
    const typeName = node.typeName as SyntaxNode;
    const names = ((typeName.names as SyntaxNode[] | undefined) ?? []).map(
      (n) => (n.String as { sval: string } | undefined)?.sval ?? '',
    );
    const name = names.at(-1) ?? '';
    if (names.length > 2 || (names.length === 2 && names[0] !== 'pg_catalog')) {
      fail(`casts to type ${names.join('.')} are not supported`);
    }
    if (typeName.typmods) fail(`type modifiers in casts (${name}(…)) are not supported`);
    const target = scalarTypeNamed(name);
    if (!target) fail(`casts to type ${name} are not supported`);
    const type: PgType = { scalar: target!, array: typeName.arrayBounds !== undefined };
    const varchar = name === 'varchar';
    const argNode = node.arg as SyntaxNode;
    if (argNode.A_ArrayExpr && type.array) {
      return arrayCast(argNode.A_ArrayExpr as SyntaxNode, type, varchar);
    }
    const arg = visit(argNode);
    if (arg.untyped) return settle(arg, type, { varchar });
    return { ...explicitCast(arg, type), varchar };
  };

  const explicitCast = (arg: Typed, type: PgType): Typed => {
    if (sameType(arg.type, type)) return arg;
    if (arg.type.array || type.array || !castSupported(arg.type.scalar, type.scalar)) {
      fail(`casting ${display(arg)} to ${displayTypeName(type)} is not supported`);
    }
    return { node: { op: 'cast', type, arg: arg.node }, type };
  };

  /**
   * `ARRAY[…]::type[]`: Postgres types the constructor from the cast and converts each element
   * to the element type as an explicit cast would (`ARRAY[1.5]::int4[]` rounds, `ARRAY[]` is
   * allowed).
   */
  const arrayCast = (array: SyntaxNode, type: PgType, varchar: boolean): Typed => {
    const elementNodes = (array.elements as SyntaxNode[] | undefined) ?? [];
    if (elementNodes.some((element) => element.A_ArrayExpr)) {
      fail('nested ARRAY[…] constructors are not supported');
    }
    const target = scalar(type.scalar);
    const elements = elementNodes.map((element) => {
      const value = visit(element);
      return value.untyped ? settle(value, target) : explicitCast(value, target);
    });
    return {
      node: { op: 'array', type: type.scalar, elements: elements.map((e) => e.node) },
      type,
      varchar,
      collation: textRulesOf(...elements),
    };
  };

  const param = (node: SyntaxNode): Expr => {
    const index = (node.number as number | undefined) ?? 0;
    const value = params[index - 1];
    if (value === undefined) {
      throw shapeInvalid('params', `$${index} is used but params[${index}] is not given`);
    }
    usedParams.add(index);
    const untyped: Untyped = { untyped: true, text: value, param: index };
    const known = paramTypes.get(index);
    return known ? settle(untyped, known.type, { varchar: known.varchar }) : untyped;
  };

  const arithmetic = (operator: string, left: Expr, right: Expr): Typed => {
    if (left.untyped && right.untyped) fail(`operator is not unique: unknown ${operator} unknown`);
    const lt = left.untyped ? undefined : left.type;
    const rt = right.untyped ? undefined : right.type;
    for (const t of [lt, rt]) {
      if (t && (t.array || categoryOf(t.scalar) !== 'number')) {
        fail(`operator ${operator} on ${displayTypeName(t)} is not supported (only on numbers)`);
      }
    }
    const type = numberDomain((lt ?? rt)!.scalar, (rt ?? lt)!.scalar);
    if (operator === '%' && isFloat(type))
      fail(`operator does not exist: ${displayTypeName(scalar(type))} % …`);
    const l = settle(left, scalar(type));
    const r = settle(right, scalar(type));
    return {
      node: { op: 'arithmetic', operator: operator as '+', type, left: l.node, right: r.node },
      type: scalar(type),
    };
  };

  const textOperand = (expr: Expr, what: string): Typed => {
    const t = typed(expr);
    if (t.type.array || t.type.scalar !== 'text') fail(`${what} needs text, not ${display(t)}`);
    return t;
  };

  /**
   * `a || b` is text concatenation when one side is text (or untyped): the other side is then
   * converted with its output function (anytextcat), which is exact for integers, uuid and
   * boolean ('true'). Two non-text operands have no such operator; arrays concatenate arrays.
   */
  const concat = (left: Expr, right: Expr): Typed => {
    const isText = (e: Expr) => e.untyped || (!e.type.array && e.type.scalar === 'text');
    if (!isText(left) && !isText(right)) {
      const [l, r] = [left as Typed, right as Typed];
      if (l.type.array || r.type.array) fail('array concatenation (||) is not supported');
      fail(`operator does not exist: ${display(l)} || ${display(r)}`);
    }
    const operand = (expr: Expr): Typed => {
      const t = typed(expr);
      if (t.type.array) fail('array concatenation (||) is not supported');
      if (t.type.scalar === 'text') return t;
      if (!castSupported(t.type.scalar, 'text')) {
        fail(`|| with ${display(t)} is not supported (only text, integers, uuid and boolean)`);
      }
      return { node: { op: 'cast', type: TEXT, arg: t.node }, type: TEXT };
    };
    const l = operand(left);
    const r = operand(right);
    return {
      node: { op: 'concat', left: l.node, right: r.node },
      type: TEXT,
      collation: textRulesOf(l, r),
    };
  };

  const like = (kind: string, operator: string, node: SyntaxNode): FilterNode => {
    const arg = textOperand(visit(node.lexpr as SyntaxNode), kind);
    let patternNode = node.rexpr as SyntaxNode;
    let escape: Typed | undefined;
    const call = patternNode.FuncCall as SyntaxNode | undefined;
    if (call && functionName(call) === 'like_escape') {
      const args = call.args as SyntaxNode[];
      patternNode = args[0]!;
      escape = textOperand(visit(args[1]!), 'ESCAPE');
    }
    const pattern = textOperand(visit(patternNode), kind);
    if (escape) textRulesOf(pattern, escape);
    return {
      op: 'like',
      caseInsensitive: operator.endsWith('*'),
      negated: operator.startsWith('!'),
      text: rulesOrDefault(arg, pattern).rules,
      arg: arg.node,
      pattern: pattern.node,
      escape: escape?.node,
    };
  };

  const arrayOperand = (expr: Expr, element: ScalarType | undefined, varchar = false): Typed => {
    if (expr.untyped) {
      if (element === undefined) fail('cannot tell the element type of an untyped array constant');
      return settle(expr, arrayOf(element!), { varchar });
    }
    if (!expr.type.array) fail(`expected an array, got ${displayTypeName(expr.type)}`);
    return expr;
  };

  const anyOperator = (node: SyntaxNode): FilterNode => {
    const operator = operatorName(node);
    if (operator !== '=') fail(`${operator} ANY(…) is not supported (only = ANY(…))`);
    const arg = visit(node.lexpr as SyntaxNode);
    const right = visit(node.rexpr as SyntaxNode);
    const argType = arg.untyped ? undefined : arg.type;
    if (argType?.array) fail('the left side of = ANY(…) must not be an array');
    // Both untyped: Postgres resolves text = text, and the array as text[].
    const element = arg.untyped && right.untyped ? 'text' : argType?.scalar;
    const array = arrayOperand(right, element, !arg.untyped && arg.varchar === true);
    const domain = comparisonDomain(argType?.scalar ?? array.type.scalar, array.type.scalar);
    if (domain === undefined) {
      fail(
        `operator does not exist: ${displayTypeName(argType!)} = ${displayTypeName(array.type)}`,
      );
    }
    const left = settle(arg, scalar(argType ? domain! : array.type.scalar), { lenient: true });
    if (domain === 'text') {
      const { deterministic, name } = rulesOrDefault(left, array);
      if (!deterministic)
        fail(`comparing text under the nondeterministic collation "${name}" is not supported`);
    }
    return {
      op: 'any',
      domain: domain!,
      elementType: array.type.scalar,
      arg: left.node,
      array: array.node,
    };
  };

  const arrayOperator = (operator: string, leftExpr: Expr, rightExpr: Expr): FilterNode => {
    const known = [leftExpr, rightExpr].find((e): e is Typed => !e.untyped);
    if (!known) fail(`operator is not unique: unknown ${operator} unknown`);
    const element = known!.type.scalar;
    const left = arrayOperand(leftExpr, element, known!.varchar === true);
    const right = arrayOperand(rightExpr, element, known!.varchar === true);
    if (!sameType(left.type, right.type) || (left.varchar === true) !== (right.varchar === true)) {
      fail(`operator does not exist: ${display(left)} ${operator} ${display(right)}`);
    }
    textRulesOf(left, right);
    return {
      op: 'array_op',
      operator: operator as '@>',
      domain: element,
      left: left.node,
      right: right.node,
    };
  };

  const operatorExpression = (node: SyntaxNode): Expr => {
    const operator = operatorName(node);
    if (!node.lexpr) {
      const arg = visit(node.rexpr as SyntaxNode);
      if (operator !== '-' && operator !== '+')
        fail(`prefix operator ${operator} is not supported`);
      if (arg.untyped || arg.type.array || categoryOf(arg.type.scalar) !== 'number') {
        fail(`prefix ${operator} is only supported on numbers`);
      }
      const t = arg as Typed;
      if (operator === '+') return t;
      return { node: { op: 'negate', type: t.type.scalar, arg: t.node }, type: t.type };
    }
    const left = visit(node.lexpr as SyntaxNode);
    const right = visit(node.rexpr as SyntaxNode);
    switch (operator) {
      case '=':
      case '<>':
      case '<':
      case '<=':
      case '>':
      case '>=':
        return { node: compare(operator, left, right), type: BOOL };
      case '+':
      case '-':
      case '*':
      case '/':
      case '%':
        return arithmetic(operator, left, right);
      case '||':
        return concat(left, right);
      case '@>':
      case '<@':
      case '&&':
        return { node: arrayOperator(operator, left, right), type: BOOL };
      case '~~':
      case '!~~':
      case '~~*':
      case '!~~*':
        return { node: like('LIKE', operator, node), type: BOOL };
      default:
        return fail(`operator ${operator} is not supported`);
    }
  };

  const aExpr = (node: SyntaxNode): Expr => {
    const kind = node.kind as string;
    switch (kind) {
      case 'AEXPR_OP':
        return operatorExpression(node);
      case 'AEXPR_OP_ANY':
        return { node: anyOperator(node), type: BOOL };
      case 'AEXPR_DISTINCT':
      case 'AEXPR_NOT_DISTINCT': {
        const left = visit(node.lexpr as SyntaxNode);
        const right = visit(node.rexpr as SyntaxNode);
        // IS DISTINCT FROM uses the operands' = operator, typed like a comparison.
        const { type: domain, varchar } = operatorType('=', left, right);
        const l = settle(left, domain, { lenient: true, varchar });
        const r = settle(right, domain, { lenient: true, varchar });
        textRulesOf(l, r);
        const negated = kind === 'AEXPR_NOT_DISTINCT';
        return {
          node: { op: 'distinct', negated, domain, left: l.node, right: r.node },
          type: BOOL,
        };
      }
      case 'AEXPR_IN':
        return { node: inList(node), type: BOOL };
      case 'AEXPR_LIKE':
      case 'AEXPR_ILIKE':
        return {
          node: like(kind === 'AEXPR_LIKE' ? 'LIKE' : 'ILIKE', operatorName(node), node),
          type: BOOL,
        };
      case 'AEXPR_BETWEEN':
      case 'AEXPR_NOT_BETWEEN':
      case 'AEXPR_BETWEEN_SYM':
      case 'AEXPR_NOT_BETWEEN_SYM':
        return { node: between(kind, node), type: BOOL };
      default:
        return fail(
          `${kind.replace('AEXPR_', '').replace(/_/g, ' ')} expressions are not supported`,
        );
    }
  };

  /**
   * `x IN (…)` as transformAExprIn builds it, which decides both types and which errors are
   * raised: items that read no column, when there are several, become one `x = ANY(ARRAY[…])`
   * (an 'in' node), their type chosen from x and them alone; every other item gets its own
   * `x = item`, ORed after it (NOT IN: `<>`, ANDed). An array x is always compared item by item.
   */
  const inList = (node: SyntaxNode): FilterNode => {
    const negated = operatorName(node) === '<>';
    const operator = negated ? '<>' : '=';
    const arg = visit(node.lexpr as SyntaxNode);
    const itemNodes = ((node.rexpr as SyntaxNode).List as { items: SyntaxNode[] }).items;
    const items = itemNodes.map((item) => ({ expr: visit(item), readsColumns: hasColumn(item) }));
    const constants = items.filter((item) => !item.readsColumns).map((item) => item.expr);
    const common = constants.length > 1 ? tryCommonType([arg, ...constants]) : undefined;
    const parts: FilterNode[] = [];
    let separate = items;
    if (common && !common.type.array) {
      parts.push(constantList(negated, arg, constants, common));
      separate = items.filter((item) => item.readsColumns);
    }
    for (const item of separate) parts.push(compare(operator, arg, item.expr));
    if (parts.length === 1) return parts[0]!;
    return { op: negated ? 'and' : 'or', args: parts };
  };

  /** The `x = ANY(ARRAY[…])` part of an IN list: items converted to their common type. */
  const constantList = (
    negated: boolean,
    arg: Expr,
    constants: Expr[],
    common: { type: PgType; varchar: boolean },
  ): FilterNode => {
    const items = constants.map((item) => settle(item, common.type));
    // x meets the element type through the = operator, as in `x = ANY(…)`.
    const domain = arg.untyped
      ? common.type.scalar
      : comparisonDomain(arg.type.scalar, common.type.scalar)!;
    const a = settle(arg, scalar(domain), { lenient: true });
    const list = items.map((item) => convert(item, scalar(domain)));
    if (domain === 'text' && !rulesOrDefault(a, ...list).deterministic) {
      fail('comparing text under a nondeterministic collation is not supported');
    }
    return {
      op: 'in',
      negated,
      domain: scalar(domain),
      arg: a.node,
      list: list.map((item) => item.node),
    };
  };

  // Postgres rewrites BETWEEN into comparisons at parse time; so does this.
  const between = (kind: string, node: SyntaxNode): FilterNode => {
    const [low, high] = ((node.rexpr as SyntaxNode).List as { items: SyntaxNode[] }).items;
    const arg = node.lexpr as SyntaxNode;
    const range = (from: SyntaxNode, to: SyntaxNode): FilterNode =>
      kind.startsWith('AEXPR_NOT')
        ? {
            op: 'or',
            args: [compare('<', visit(arg), visit(from)), compare('>', visit(arg), visit(to))],
          }
        : {
            op: 'and',
            args: [compare('>=', visit(arg), visit(from)), compare('<=', visit(arg), visit(to))],
          };
    const forward = range(low!, high!);
    if (!kind.endsWith('_SYM')) return forward;
    const backward = range(high!, low!);
    return kind.startsWith('AEXPR_NOT')
      ? { op: 'and', args: [forward, backward] }
      : { op: 'or', args: [forward, backward] };
  };

  const funcCall = (node: SyntaxNode): Typed => {
    const name = functionName(node);
    for (const option of [
      'agg_order',
      'agg_filter',
      'over',
      'agg_star',
      'agg_distinct',
      'func_variadic',
    ]) {
      if (node[option])
        fail(`${name}(…) with aggregate, window or variadic options is not supported`);
    }
    const args = ((node.args as SyntaxNode[] | undefined) ?? []).map(visit);
    if (name !== 'lower' && name !== 'upper' && name !== 'length') {
      fail(
        `function ${name}() is not allowed in where clauses (allowed: lower, upper, length, coalesce)`,
      );
    }
    if (args.length !== 1) fail(`${name}() takes exactly one argument`);
    const arg = textOperand(args[0]!, `${name}()`);
    if (name === 'length') return { node: { op: 'length', arg: arg.node }, type: scalar('int4') };
    const collation = textRulesOf(arg);
    return {
      node: {
        op: 'case_map',
        upper: name === 'upper',
        text: rulesOrDefault(arg).rules,
        arg: arg.node,
      },
      type: TEXT,
      collation,
    };
  };

  // IS NULL does not type its operand: an untyped `$n` stays untyped, which Postgres refuses.
  const nullTestOperand = (expr: Expr): Typed => {
    if (expr.untyped && expr.param !== undefined) {
      fail(`could not determine data type of parameter $${expr.param}`);
    }
    return typed(expr);
  };

  const visit = (node: SyntaxNode): Expr => {
    const [kind, body] = Object.entries(node)[0] ?? ['', {}];
    const n = body as SyntaxNode;
    switch (kind) {
      case 'ColumnRef':
        return column(n);
      case 'A_Const':
        return constant(n);
      case 'ParamRef':
        return param(n);
      case 'TypeCast':
        return typeCast(n);
      case 'A_Expr':
        return aExpr(n);
      case 'BoolExpr': {
        const op = n.boolop as string;
        const args = (n.args as SyntaxNode[]).map((arg) => boolean(arg, op.replace('_EXPR', '')));
        if (op === 'NOT_EXPR') return { node: { op: 'not', arg: args[0]! }, type: BOOL };
        return { node: { op: op === 'AND_EXPR' ? 'and' : 'or', args }, type: BOOL };
      }
      case 'NullTest': {
        const target = n.arg as SyntaxNode;
        const arg = target.ColumnRef
          ? column(target.ColumnRef as SyntaxNode, true)
          : nullTestOperand(visit(target));
        const negated = n.nulltesttype === 'IS_NOT_NULL';
        return { node: { op: 'is_null', negated, arg: arg.node }, type: BOOL };
      }
      case 'BooleanTest': {
        const test = (n.booltesttype as string)
          .replace('IS_NOT_', '')
          .replace('IS_', '')
          .toLowerCase();
        const negated = (n.booltesttype as string).startsWith('IS_NOT_');
        const arg = boolean(n.arg as SyntaxNode, 'IS TRUE/FALSE/UNKNOWN');
        return { node: { op: 'bool_test', test: test as 'true', negated, arg }, type: BOOL };
      }
      case 'FuncCall':
        return funcCall(n);
      case 'CoalesceExpr': {
        const args = (n.args as SyntaxNode[]).map(visit);
        const { type, varchar } = commonType(args, 'COALESCE');
        const settled = args.map((arg) => settle(arg, type, { varchar }));
        return {
          node: { op: 'coalesce', type, args: settled.map((a) => a.node) },
          type,
          collation: textRulesOf(...settled),
          varchar,
        };
      }
      case 'A_ArrayExpr': {
        const elements = ((n.elements as SyntaxNode[] | undefined) ?? []).map(visit);
        if (elements.length === 0) fail('an empty ARRAY[] needs a cast to say its type');
        const { type, varchar } = commonType(elements, 'ARRAY');
        if (type.array) fail('nested ARRAY[…] constructors are not supported');
        const settled = elements.map((e) => settle(e, type, { varchar }));
        return {
          node: { op: 'array', type: type.scalar, elements: settled.map((e) => e.node) },
          type: arrayOf(type.scalar),
          varchar,
          collation: textRulesOf(...settled),
        };
      }
      case 'CollateClause': {
        const names = (n.collname as SyntaxNode[]).map((c) => (c.String as { sval: string }).sval);
        const name = names.at(-1) ?? '';
        if ((names.length > 1 && names[0] !== 'pg_catalog') || (name !== 'C' && name !== 'POSIX')) {
          fail(`collation "${names.join('.')}" is not supported (only "C" and "POSIX")`);
        }
        const arg = textOperand(visit(n.arg as SyntaxNode), 'COLLATE');
        return {
          node: { op: 'collate', collation: name as 'C', arg: arg.node },
          type: TEXT,
          varchar: arg.varchar,
          collation: {
            rules: { codePointOrder: true, caseMapping: 'ascii' },
            deterministic: true,
            explicit: true,
            name,
          },
        };
      }
      default:
        return fail(
          `${CONSTRUCTS[kind] ?? kind} ${CONSTRUCTS[kind] ? 'are' : 'is'} not supported in where clauses`,
        );
    }
  };

  const root = boolean(tree, 'WHERE');
  return { root, constants, usedParams };
}

function operatorName(node: SyntaxNode): string {
  const names = (node.name as SyntaxNode[]).map((n) => (n.String as { sval: string }).sval);
  if (names.length > 2 || (names.length === 2 && names[0] !== 'pg_catalog')) {
    throw shapeInvalid('where', `operator ${names.join('.')} is not supported`);
  }
  return names.at(-1) ?? '';
}

function functionName(node: SyntaxNode): string {
  const names = (node.funcname as SyntaxNode[]).map((n) => (n.String as { sval: string }).sval);
  if (names.length > 2 || (names.length === 2 && names[0] !== 'pg_catalog')) {
    throw shapeInvalid('where', `function ${names.join('.')}() is not allowed in where clauses`);
  }
  return names.at(-1) ?? '';
}

/** Decimal, hexadecimal, octal or binary integer literal text (Postgres 16+ syntax). */
function integerLiteral(text: string): bigint | undefined {
  const negative = text.startsWith('-');
  const body = (negative ? text.slice(1) : text).replace(/_/g, '');
  if (!/^([0-9]+|0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+)$/.test(body)) return undefined;
  const value = BigInt(body);
  return negative ? -value : value;
}

/** Postgres' name of a typed expression's type, for messages (`character varying[]`). */
function display(expr: Typed): string {
  if (!expr.varchar) return displayTypeName(expr.type);
  return expr.type.array ? 'character varying[]' : 'character varying';
}

/** Whether a parse tree reads a column (Postgres' contain_vars_of_level). */
function hasColumn(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(hasColumn);
  if (typeof node !== 'object' || node === null) return false;
  return Object.entries(node).some(([key, value]) => key === 'ColumnRef' || hasColumn(value));
}
