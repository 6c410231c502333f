import type { FilterNode, TextRules } from './filter-spec.js';
import {
  arrayOf,
  castSupported,
  categoryOf,
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
import { WhereClauseError } from './where-clause-error.js';
import type { WhereTable } from './where-columns.js';
import type { SyntaxNode } from './where-parser.js';

/** A literal or `$n` whose type the context decides, as Postgres types `'42'` or `$1`. */
interface Untyped {
  untyped: true;
  text: string | null;
  param: number | undefined;
}

/** A typed expression; `collation` is set for text that carries one (a column or COLLATE). */
interface Typed {
  untyped?: false;
  node: FilterNode;
  type: PgType;
  collation?: { rules: TextRules; deterministic: boolean; explicit: boolean; name: string };
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
  throw new WhereClauseError('where', message);
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

  const settle = (expr: Expr, type: PgType): Typed => {
    if (!expr.untyped) return convert(expr, type);
    if (expr.text === null) {
      return { node: { op: 'const', type, value: null }, type };
    }
    const node: PendingConstant['node'] =
      expr.param === undefined
        ? { op: 'const', type, value: expr.text }
        : { op: 'param', index: expr.param, type, value: expr.text };
    constants.push({ node, text: expr.text });
    return { node, type };
  };

  /** An implicit conversion Postgres would apply to reach `type`. */
  const convert = (expr: Typed, type: PgType): Typed => {
    if (sameType(expr.type, type)) return expr;
    if (expr.type.array || type.array || !castSupported(expr.type.scalar, type.scalar)) {
      fail(`cannot use ${displayTypeName(expr.type)} as ${displayTypeName(type)}`);
    }
    return { node: { op: 'cast', type, arg: expr.node }, type, collation: expr.collation };
  };

  const typed = (expr: Expr): Typed => (expr.untyped ? settle(expr, TEXT) : expr);

  const boolean = (node: SyntaxNode, what: string): FilterNode => {
    const expr = visit(node);
    if (!expr.untyped && !sameType(expr.type, BOOL)) {
      fail(`argument of ${what} must be type boolean, not type ${displayTypeName(expr.type)}`);
    }
    return settle(expr, BOOL).node;
  };

  const textRulesOf = (...exprs: Typed[]): Typed['collation'] => {
    const explicit = exprs.find((e) => e.collation?.explicit)?.collation;
    return explicit ?? exprs.find((e) => e.collation)?.collation;
  };

  const rulesOrDefault = (...exprs: Typed[]) => {
    const collation = textRulesOf(...exprs);
    return {
      rules: collation?.rules ?? table.defaultText,
      deterministic: collation?.deterministic ?? true,
      name: collation?.name ?? 'default',
    };
  };

  /** The common type of several expressions (IN lists, ARRAY[…], COALESCE). */
  const commonType = (exprs: Expr[], what: string): PgType => {
    let common: PgType | undefined;
    for (const expr of exprs) {
      if (expr.untyped) continue;
      if (!common) {
        common = expr.type;
        continue;
      }
      const domain =
        common.array || expr.type.array
          ? sameType(common, expr.type)
            ? common.scalar
            : undefined
          : comparisonDomain(common.scalar, expr.type.scalar);
      if (domain === undefined) {
        fail(
          `${what} types ${displayTypeName(common)} and ${displayTypeName(expr.type)} cannot be matched`,
        );
      }
      common = { scalar: domain!, array: common.array };
    }
    return common ?? TEXT;
  };

  const compare = (operator: string, left: Expr, right: Expr): FilterNode => {
    const domain = commonType([left, right], 'operator');
    const l = settle(left, domain);
    const r = settle(right, domain);
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
      fail("column references must be a plain column name of the shape's table");
    }
    const name = (fields[0]!.String as { sval: string }).sval;
    const info = table.columns.get(name);
    if (!info) fail(`column "${name}" does not exist in ${table.name}`);
    if (info!.generated) {
      fail(`generated column "${name}" cannot be used: Postgres does not replicate it`);
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
      collation:
        type.scalar === 'text'
          ? {
              rules: info!.text,
              deterministic: info!.deterministic,
              explicit: false,
              name: info!.collation,
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
      // Integers too large for int4 arrive here too: Postgres makes them int8 when they fit.
      const text = (node.fval as { fval: string }).fval;
      const integer = integerLiteral(text);
      const fitsInt8 = integer !== undefined && integer >= -(2n ** 63n) && integer < 2n ** 63n;
      return fitsInt8 ? settleLiteral(integer.toString(), 'int8') : settleLiteral(text, 'numeric');
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
    const arg = visit(node.arg as SyntaxNode);
    if (arg.untyped) return settle(arg, type);
    if (sameType(arg.type, type)) return arg;
    if (arg.type.array || type.array || !castSupported(arg.type.scalar, target!)) {
      fail(`casting ${displayTypeName(arg.type)} to ${displayTypeName(type)} is not supported`);
    }
    return { node: { op: 'cast', type, arg: arg.node }, type };
  };

  const param = (node: SyntaxNode): Untyped => {
    const index = (node.number as number | undefined) ?? 0;
    const value = params[index - 1];
    if (value === undefined) {
      throw new WhereClauseError('params', `$${index} is used but params[${index}] is not given`);
    }
    usedParams.add(index);
    return { untyped: true, text: value, param: index };
  };

  const arithmetic = (operator: string, left: Expr, right: Expr): Typed => {
    if (left.untyped && right.untyped) fail(`operator is not unique: unknown ${operator} unknown`);
    const lt = left.untyped ? undefined : left.type;
    const rt = right.untyped ? undefined : right.type;
    for (const t of [lt, rt]) {
      if (t && (t.array || categoryOf(t.scalar) !== 'number')) {
        fail(`operator ${operator} is only supported on numbers, not ${displayTypeName(t)}`);
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
    if (t.type.array || t.type.scalar !== 'text') {
      if (!t.type.array && castSupported(t.type.scalar, 'text') && what === '||') {
        return { node: { op: 'cast', type: TEXT, arg: t.node }, type: TEXT };
      }
      fail(`${what} needs text, not ${displayTypeName(t.type)}`);
    }
    return t;
  };

  const like = (kind: string, operator: string, node: SyntaxNode): FilterNode => {
    const arg = textOperand(visit(node.lexpr as SyntaxNode), kind);
    let patternNode = node.rexpr as SyntaxNode;
    let escape: FilterNode | undefined;
    const call = patternNode.FuncCall as SyntaxNode | undefined;
    if (call && functionName(call) === 'like_escape') {
      const args = call.args as SyntaxNode[];
      patternNode = args[0]!;
      escape = textOperand(visit(args[1]!), 'ESCAPE').node;
    }
    const pattern = textOperand(visit(patternNode), kind);
    return {
      op: 'like',
      caseInsensitive: operator.endsWith('*'),
      negated: operator.startsWith('!'),
      text: rulesOrDefault(arg, pattern).rules,
      arg: arg.node,
      pattern: pattern.node,
      escape,
    };
  };

  const arrayOperand = (expr: Expr, element: ScalarType | undefined): Typed => {
    if (expr.untyped) {
      if (element === undefined) fail('cannot tell the element type of an untyped array constant');
      return settle(expr, arrayOf(element!));
    }
    if (!expr.type.array) fail(`expected an array, got ${displayTypeName(expr.type)}`);
    return expr;
  };

  const anyOperator = (node: SyntaxNode): FilterNode => {
    if (operatorName(node) !== '=') fail('only = ANY(…) is supported');
    const arg = visit(node.lexpr as SyntaxNode);
    const right = visit(node.rexpr as SyntaxNode);
    const argType = arg.untyped ? undefined : arg.type;
    if (argType?.array) fail('the left side of = ANY(…) must not be an array');
    const array = arrayOperand(right, argType?.scalar);
    const domain = comparisonDomain(argType?.scalar ?? array.type.scalar, array.type.scalar);
    if (domain === undefined) {
      fail(
        `operator does not exist: ${displayTypeName(argType!)} = ${displayTypeName(array.type)}`,
      );
    }
    const left = settle(arg, scalar(argType ? domain! : array.type.scalar));
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
    const left = arrayOperand(leftExpr, element);
    const right = arrayOperand(rightExpr, element);
    if (!sameType(left.type, right.type)) {
      fail(
        `operator does not exist: ${displayTypeName(left.type)} ${operator} ${displayTypeName(right.type)}`,
      );
    }
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
      case '||': {
        const l = textOperand(left, '||');
        const r = textOperand(right, '||');
        return {
          node: { op: 'concat', left: l.node, right: r.node },
          type: TEXT,
          collation: textRulesOf(l, r),
        };
      }
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
        const domain = commonType([left, right], 'IS DISTINCT FROM');
        const l = settle(left, domain);
        const r = settle(right, domain);
        const negated = kind === 'AEXPR_NOT_DISTINCT';
        return {
          node: { op: 'distinct', negated, domain, left: l.node, right: r.node },
          type: BOOL,
        };
      }
      case 'AEXPR_IN': {
        const arg = visit(node.lexpr as SyntaxNode);
        const list = ((node.rexpr as SyntaxNode).List as { items: SyntaxNode[] }).items.map(visit);
        const domain = commonType([arg, ...list], 'IN');
        const a = settle(arg, domain);
        const items = list.map((item) => settle(item, domain));
        if (domain.scalar === 'text' && !rulesOrDefault(a, ...items).deterministic) {
          fail('comparing text under a nondeterministic collation is not supported');
        }
        const negated = operatorName(node) === '<>';
        return {
          node: { op: 'in', negated, domain, arg: a.node, list: items.map((i) => i.node) },
          type: BOOL,
        };
      }
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
          : typed(visit(target));
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
        const type = commonType(args, 'COALESCE');
        const settled = args.map((arg) => settle(arg, type));
        return {
          node: { op: 'coalesce', type, args: settled.map((a) => a.node) },
          type,
          collation: textRulesOf(...settled),
        };
      }
      case 'A_ArrayExpr': {
        const elements = ((n.elements as SyntaxNode[] | undefined) ?? []).map(visit);
        if (elements.length === 0) fail('an empty ARRAY[] needs a cast to say its type');
        const type = commonType(elements, 'ARRAY');
        if (type.array) fail('nested ARRAY[…] constructors are not supported');
        const settled = elements.map((e) => settle(e, type));
        return {
          node: { op: 'array', type: type.scalar, elements: settled.map((e) => e.node) },
          type: arrayOf(type.scalar),
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
    throw new WhereClauseError('where', `operator ${names.join('.')} is not supported`);
  }
  return names.at(-1) ?? '';
}

function functionName(node: SyntaxNode): string {
  const names = (node.funcname as SyntaxNode[]).map((n) => (n.String as { sval: string }).sval);
  if (names.length > 2 || (names.length === 2 && names[0] !== 'pg_catalog')) {
    throw new WhereClauseError(
      'where',
      `function ${names.join('.')}() is not allowed in where clauses`,
    );
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
