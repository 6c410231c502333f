import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWhereClause, type SyntaxNode } from './where-parser.js';
import { SluiceError } from '../errors/sluice-error.js';
import { DEFAULT_WHERE_LIMITS as LIMITS } from './where-limits.js';

const NOT_AN_EXPRESSION =
  'must be a single boolean expression (no ORDER BY, LIMIT, UNION, FROM or other clauses)';
const DOLLAR = 'dollar-quoted strings are not supported';
const UNICODE = 'Unicode escapes (U&…) are not supported';

/** Asserts that the clause is refused under `where` with exactly this message. */
async function refused(where: string, message: string | RegExp): Promise<void> {
  await assert.rejects(parseWhereClause(where, LIMITS), (error: unknown) => {
    assert.ok(error instanceof SluiceError, `not a SluiceError: ${String(error)}`);
    assert.equal(error.code, 'SLUICE_ERR_SHAPE_INVALID');
    assert.equal(error.details.field, 'where');
    if (typeof message === 'string') assert.equal(error.message, message);
    else assert.match(error.message, message);
    return true;
  });
}

/** The clause's constants (A_Const bodies), in tree order. */
function constants(node: unknown): Record<string, unknown>[] {
  if (Array.isArray(node)) return node.flatMap(constants);
  if (typeof node !== 'object' || node === null) return [];
  return Object.entries(node).flatMap(([kind, body]) =>
    kind === 'A_Const' ? [body as Record<string, unknown>] : constants(body),
  );
}

test('a valid clause returns its expression node, located in the wrapped text', async () => {
  const node = await parseWhereClause('id = 1', LIMITS);
  assert.deepEqual(node, {
    A_Expr: {
      kind: 'AEXPR_OP',
      name: [{ String: { sval: '=' } }],
      lexpr: { ColumnRef: { fields: [{ String: { sval: 'id' } }], location: 15 } },
      rexpr: { A_Const: { ival: { ival: 1 }, location: 20 } },
      location: 18,
    },
  });
});

test('an AND of comparisons returns a BoolExpr', async () => {
  const node: SyntaxNode = await parseWhereClause('a = 1 AND b > 2', LIMITS);
  const bool = node.BoolExpr as { boolop: string; args: unknown[] } | undefined;
  assert.equal(bool?.boolop, 'AND_EXPR');
  assert.equal(bool.args.length, 2);
});

test('a syntax error reads like Electric: At location N (in SELECT 1 WHERE …)', async () => {
  await refused('1 x 1', 'At location 17: syntax error at or near "x"');
  await refused(') OR (1=1', 'At location 15: syntax error at or near ")"');
  await refused('id = ', /^At location \d+: syntax error at end of input$/);
});

test('a syntax error is a SluiceError with the shape-invalid code, under where', async () => {
  await assert.rejects(parseWhereClause('1 x 1', LIMITS), (error: unknown) => {
    assert.ok(error instanceof SluiceError);
    assert.equal(error.code, 'SLUICE_ERR_SHAPE_INVALID');
    assert.equal(error.details.field, 'where');
    return true;
  });
});

test('an empty or blank clause is refused', async () => {
  await refused('', 'must not be empty');
  await refused('   ', 'must not be empty');
  await refused('\n\t ', 'must not be empty');
});

test('a second statement is refused', async () => {
  await refused('true; DROP TABLE x', 'must be a single boolean expression, not statements');
  await refused('true; SELECT 1', 'must be a single boolean expression, not statements');
});

for (const where of [
  'true ORDER BY 1',
  'true LIMIT 1',
  'true OFFSET 1',
  'true FETCH FIRST 1 ROW ONLY',
  'true UNION SELECT 1',
  'true UNION ALL SELECT 1',
  'true INTERSECT SELECT 1',
  'true EXCEPT SELECT 1',
  'true GROUP BY 1',
  'true HAVING true',
  'true WINDOW w AS ()',
  'true FOR UPDATE',
  'true FOR SHARE',
]) {
  test(`clauses of a SELECT other than WHERE are refused: ${where}`, async () => {
    await refused(where, NOT_AN_EXPRESSION);
  });
}

test('breaking out of the WHERE with a parenthesis is a syntax error', async () => {
  await refused(') OR (1=1', /^At location 15: syntax error/);
  await refused('true) OR (true', /^At location \d+: syntax error/);
});

test('dollar-quoted strings are refused', async () => {
  await refused('x = $$x$$', DOLLAR);
  await refused('$$x$$ = x', DOLLAR);
  await refused('x = $q$x$q$', DOLLAR);
  await refused('x = $q$it$$s$q$', DOLLAR);
  await refused('x = $$z$$::text', DOLLAR);
  await refused('x = text $$z$$', DOLLAR);
  await refused('x IN (1, $$2$$)', DOLLAR);
});

test('Unicode escapes are refused, in strings and in column names', async () => {
  await refused("x = U&'\\0041'", UNICODE);
  await refused("x = u&'\\0041'", UNICODE);
  await refused("x = U&'!0041' UESCAPE '!'", UNICODE);
  await refused('U&"col" = 1', UNICODE);
  await refused('x = 1 AND u&"c\\006fl" = 2', UNICODE);
});

test('ordinary quoting is accepted', async () => {
  const escapedQuote = constants(await parseWhereClause("x = 'it''s'", LIMITS));
  assert.deepEqual(escapedQuote[0]?.sval, { sval: "it's" });

  const escapeString = constants(await parseWhereClause("x = E'a\\nb'", LIMITS));
  assert.deepEqual(escapeString[0]?.sval, { sval: 'a\nb' });

  const quoted = await parseWhereClause('"quoted col" = 1', LIMITS);
  const lexpr = (quoted.A_Expr as { lexpr: unknown }).lexpr;
  assert.deepEqual(lexpr, {
    ColumnRef: { fields: [{ String: { sval: 'quoted col' } }], location: 15 },
  });
});

test('params ($1) are not dollar quotes', async () => {
  const node = await parseWhereClause('x = $1 AND y = $2', LIMITS);
  assert.ok(node.BoolExpr);
});

test('strings that merely contain $ or U& are accepted', async () => {
  await parseWhereClause("x = '$$' AND y = 'U&' AND z = '$1'", LIMITS);
  await parseWhereClause('"$$" = 1 AND "U&x" = 2', LIMITS);
});

test('locations are byte offsets: non-ASCII text before a dollar quote does not hide it', async () => {
  await refused("'é' = x AND y = $$z$$", DOLLAR);
  // Each of these shifts byte offsets away from UTF-16 indexes by two or more.
  await refused("'éé' = x AND y = $$z$$", DOLLAR);
  await refused("'€' = x AND y = $q$z$q$", DOLLAR);
  await refused("'😀😀' = x AND y = $$z$$", DOLLAR);
  await refused('"ünïcödé" = 1 AND y = $$z$$', DOLLAR);
  await refused('\'€€\' = x AND U&"y" = 1', UNICODE);
  await refused("'€€' = x AND y = U&'\\0041'", UNICODE);
});

test('locations are byte offsets: non-ASCII text before an ordinary string does not refuse it', async () => {
  // Read at UTF-16 indexes, the location of '$' (or 'u&x') would land inside the string.
  await parseWhereClause("'é' = x AND y = '$'", LIMITS);
  await parseWhereClause("'éé' = x AND y = 'u&x'", LIMITS);
  await parseWhereClause("'😀' = x AND y = '$$'", LIMITS);
});

test('Unicode-escaped names are refused wherever they appear', async () => {
  for (const where of [`U&"lower"(x) = 'a'`, 'x::U&"text" = 1', `lower(U&"x") = 'a'`]) {
    await assert.rejects(parseWhereClause(where, LIMITS), /Unicode escapes/, where);
  }
});

test('a NUL character is refused: libpg_query would filter on the text before it', async () => {
  await refused('id = 1\0garbage', 'must not contain a NUL character (%00)');
});

test('a clause longer than the length limit is refused naming the limit', async () => {
  const where = `title = '${'x'.repeat(LIMITS.maxLength)}'`;
  await refused(
    where,
    `is ${where.length} characters long; at most ${LIMITS.maxLength} are allowed (SLUICE_WHERE_MAX_LENGTH)`,
  );
  await parseWhereClause('id = 1', { ...LIMITS, maxLength: 6 });
  await assert.rejects(
    parseWhereClause('id = 1', { ...LIMITS, maxLength: 5 }),
    /^SluiceError: is 6 characters long; at most 5 are allowed/,
  );
});

test('deep nesting is refused naming the depth limit, before any recursive walk', async () => {
  const depth = /^is nested \d+ levels deep; at most 64 are allowed \(SLUICE_WHERE_MAX_DEPTH\)$/;
  // 650 concatenations kept Postgres busy for 27 s; 1,500 NOTs and 2,000 additions overflowed
  // the stack of the compiler's walks.
  await refused(`${Array(651).fill('t').join(' || ')} = 'x'`, depth);
  await refused(`${'NOT '.repeat(1500)}true`, depth);
  await refused(`id${'+1'.repeat(2000)} = 1`, depth);
  await refused(`${'f('.repeat(500)}x${')'.repeat(500)} = 1`, depth);
  // Just within the limit: 1 + 1 … nests one level per addition, plus = and the constant.
  await parseWhereClause(`1${'+1'.repeat(61)} = 2`, LIMITS);
  await refused(`1${'+1'.repeat(63)} = 2`, depth);
});

test('a clause with too many syntax nodes is refused naming the node limit', async () => {
  const list = Array.from({ length: 1200 }, (_, i) => i).join(',');
  await refused(
    `id IN (${list})`,
    /^has \d+ syntax nodes; at most 1000 are allowed \(SLUICE_WHERE_MAX_NODES\)$/,
  );
  await parseWhereClause(`id IN (${list.split(',').slice(0, 900).join(',')})`, LIMITS);
});
