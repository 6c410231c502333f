import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWhereClause, type SyntaxNode } from './where-parser.js';
import { SluiceError } from '../errors/sluice-error.js';

const NOT_AN_EXPRESSION =
  'must be a single boolean expression (no ORDER BY, LIMIT, UNION, FROM or other clauses)';
const DOLLAR = 'dollar-quoted strings are not supported';
const UNICODE = 'Unicode escapes (U&…) are not supported';

/** Asserts that the clause is refused under `where` with exactly this message. */
async function refused(where: string, message: string | RegExp): Promise<void> {
  await assert.rejects(parseWhereClause(where), (error: unknown) => {
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
  const node = await parseWhereClause('id = 1');
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
  const node: SyntaxNode = await parseWhereClause('a = 1 AND b > 2');
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
  await assert.rejects(parseWhereClause('1 x 1'), (error: unknown) => {
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
  const escapedQuote = constants(await parseWhereClause("x = 'it''s'"));
  assert.deepEqual(escapedQuote[0]?.sval, { sval: "it's" });

  const escapeString = constants(await parseWhereClause("x = E'a\\nb'"));
  assert.deepEqual(escapeString[0]?.sval, { sval: 'a\nb' });

  const quoted = await parseWhereClause('"quoted col" = 1');
  const lexpr = (quoted.A_Expr as { lexpr: unknown }).lexpr;
  assert.deepEqual(lexpr, {
    ColumnRef: { fields: [{ String: { sval: 'quoted col' } }], location: 15 },
  });
});

test('params ($1) are not dollar quotes', async () => {
  const node = await parseWhereClause('x = $1 AND y = $2');
  assert.ok(node.BoolExpr);
});

test('strings that merely contain $ or U& are accepted', async () => {
  await parseWhereClause("x = '$$' AND y = 'U&' AND z = '$1'");
  await parseWhereClause('"$$" = 1 AND "U&x" = 2');
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
  await parseWhereClause("'é' = x AND y = '$'");
  await parseWhereClause("'éé' = x AND y = 'u&x'");
  await parseWhereClause("'😀' = x AND y = '$$'");
});

test('Unicode-escaped names are refused wherever they appear', async () => {
  for (const where of [`U&"lower"(x) = 'a'`, 'x::U&"text" = 1', `lower(U&"x") = 'a'`]) {
    await assert.rejects(parseWhereClause(where), /Unicode escapes/, where);
  }
});
