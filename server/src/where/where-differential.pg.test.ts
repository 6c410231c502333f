// Differential test: the where-clause evaluator against Postgres itself.
//
// A table with a column of every supported type is filled with generated rows (NULLs, limits,
// NaN and infinities, -0, BC dates, awkward strings, arrays with NULLs and odd bounds). Thousands
// of random where clauses from the accepted subset are then evaluated both ways on every row:
//   - Postgres evaluates the clause text exactly as written, with its params bound as `$n`, in
//     one query per clause (`SELECT id, where_answer(<clause>) FROM t`); where_answer takes a
//     boolean, so the clause is coerced the way WHERE coerces it. When that query fails because
//     some row raises an error, a PL/pgSQL helper evaluates the clause row by row, trapping each
//     row's error;
//   - Sluice compiles the clause (compileShapeFilter) and runs compileNode on each row's text
//     output.
// Every (clause, row) pair must give the same TRUE, FALSE or NULL, or an error on both sides.
// Clauses Sluice refuses must be refused by Postgres too (EXPLAIN fails: parsing, typing or a
// constant part failing at planning), unless the refusal names a documented limitation
// (REFUSALS_EXPECTED); clauses Sluice accepts must be accepted by Postgres. For a sample of
// clauses the re-printed SQL (filterSql) must select exactly the rows that are TRUE.
// PINNED_CLAUSES run first, every time: each aims at one pitfall the random ones rarely meet.
//
// The seed is WHERE_DIFF_SEED (printed on failure); WHERE_DIFF_ROWS and WHERE_DIFF_CLAUSES
// change the sizes, WHERE_DIFF_MAX_REPORTED how many disagreements a failure lists, and
// WHERE_DIFF_VERBOSE=1 prints the documented limitations met.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startPostgres, type TestDatabase, type TestPostgres } from '@sluice/harness';
import type { Row } from '../pg/transaction.js';
import { sessionOptionsString } from '../pg/session-settings.js';
import { loadTableSchema, type TableSchema } from '../pg/table-schema.js';
import { compileNode } from './filter-evaluator.js';
import { childNodes, type FilterNode, type FilterSpec } from './filter-spec.js';
import { filterSql, paramSettingName } from './filter-sql.js';
import { isEvaluationError } from './pg-values.js';
import { compileShapeFilter } from './shape-filter.js';
import { ClauseGenerator } from './clause-generator-testing.js';
import { COLUMNS, quoteName, Random } from './differential-values-testing.js';
import { SluiceError } from '../errors/sluice-error.js';
import { DEFAULT_WHERE_LIMITS } from './where-limits.js';

const SEED = Number(process.env.WHERE_DIFF_SEED ?? 20250611);
const ROW_COUNT = Number(process.env.WHERE_DIFF_ROWS ?? 2000);
const CLAUSE_COUNT = Number(process.env.WHERE_DIFF_CLAUSES ?? 1500);
const WORKERS = 4;
const MAX_REPORTED = Number(process.env.WHERE_DIFF_MAX_REPORTED ?? 20);
/** One clause in this many also has its filterSql checked. */
const SQL_CHECK_EVERY = 3;

/**
 * Refusals of clauses Postgres accepts that are documented limitations of the subset. Any other
 * refusal of a clause Postgres runs is reported, so that a surprising one cannot hide.
 */
const REFUSALS_EXPECTED: RegExp[] = [
  /\bnot supported\b/,
  /is not allowed in where clauses/,
  /which where clauses can only test with IS \[NOT\] NULL/,
  // Subqueries must read a table (docs/protocol.md §13.1): `i4 IN (SELECT 1)` reads none.
  /a subquery must read exactly one table/,
];

let postgres: TestPostgres;
let db: TestDatabase;
let pool: pg.Pool;

// Every value as Postgres' text output, untouched by pg's type parsers.
const rawText = { getTypeParser: () => (value: string) => value };

before(async () => {
  postgres = await startPostgres();
  db = await postgres.createDatabase();
  pool = new pg.Pool({
    connectionString: db.url,
    // Custom plans everywhere, so that the row-by-row fallback folds bound parameters into
    // constants exactly as the one-query path does.
    options: `${sessionOptionsString()} -c plan_cache_mode=force_custom_plan`,
    types: rawText,
    max: WORKERS,
  });
});

after(async () => {
  await pool?.end();
  await db?.drop();
  await postgres?.stop();
});

async function createTable(r: Random): Promise<Row[]> {
  const columns = COLUMNS.map((c) => `${quoteName(c.name)} ${c.sqlType}`).join(', ');
  await pool.query(`CREATE TABLE t (id int4 PRIMARY KEY, ${columns})`);
  // The clause is an argument, so Postgres coerces it to boolean as WHERE does (an unknown
  // literal becomes boolean, an integer is refused). A SQL function is inlined: no call remains.
  await pool.query(
    `CREATE FUNCTION where_answer(boolean) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT $1::text'`,
  );
  const names = ['id', ...COLUMNS.map((c) => quoteName(c.name))].join(', ');
  const batch = 200;
  for (let start = 1; start <= ROW_COUNT; start += batch) {
    const values: (string | null)[] = [];
    const tuples: string[] = [];
    for (let id = start; id < start + batch && id <= ROW_COUNT; id++) {
      // The first rows are all NULL, then one edge-heavy row per column value list.
      const row = [String(id), ...COLUMNS.map((c) => (id === 1 ? null : c.value(r)))];
      tuples.push(`(${row.map((_, i) => `$${values.length + i + 1}`).join(', ')})`);
      values.push(...row);
    }
    await pool.query(`INSERT INTO t (${names}) VALUES ${tuples.join(', ')}`, values);
  }
  const { rows } = await pool.query<Row>('SELECT * FROM t ORDER BY id');
  return rows;
}

/**
 * Clauses that run every time, before the random ones: each aims at one way the evaluator went
 * wrong or could easily go wrong, with values the row pools contain.
 */
const PINNED_CLAUSES: [string, string[]][] = [
  // Strict operators evaluate every operand before looking at NULLs.
  ['(i8 + f8) != (i8 + i4)', []],
  ['(1 / i2 + NULL::int4) IS NULL', []],
  // The planner folds constants: a constant NULL, TRUE or FALSE decides without the rest.
  ['(1 / i2 > 0) AND 1 = 2', []],
  ['(1 / i2 > 0) OR $1::bool', ['yes']],
  ['i4 = 1 OR true OR 1 / 0 = 1', []],
  ['COALESCE(i4, 1, 1 / 0) > 0', []],
  ['1 / 0 = i4', []],
  // Literals and their types.
  ['(-2147483648 + i4) < 0', []],
  ['(0x7fffffff + i4) > 0', []],
  ['(i8)::real > 1152921504606846976::real', []], // 2^60: int8 → float4 must round once
  ['(num)::float4 > 1::float4', []], // numeric → float4 must round once
  ['COALESCE(i4, f4) = i4', []], // the common type of int4 and float4 is float4
  // IN: constant items form one = ANY, typed without the items that read columns.
  ['num IN (0.1, 7, f8)', []],
  ['f4 IN (1e39, 2)', []],
  ['i4 IN (1.5::float4, 2.5::float4, i2)', []],
  ['i4 IN (1, 1 / i2, 7)', []],
  ['i4 IN (1 / i2, 7)', []],
  ['i4 NOT IN (1, NULL, i2)', []],
  // A parameter keeps the type its first use gave it.
  ['$1 = f4 OR $1 = f8', ['0.1']],
  ['$1 IS NULL', ['5']],
  ['i4 = $1 AND $1 IS NOT NULL', ['7']],
  // Text concatenation needs a text operand.
  ['u || u = $1', ['x']],
  ['(b || $1) = $2', ['x', 'truex']],
  ['i4 || 1 = $1', ['71']],
  // LIKE: escapes are converted before ILIKE lowercases, and errors come from the walk.
  ['txt LIKE $1', ['a\\']],
  ["txt ILIKE 'aX%' ESCAPE 'X'", []],
  ["txt LIKE 'a%' ESCAPE 'ab'", []],
  ["txt LIKE vc ESCAPE 'ab'", []],
  ["txt NOT LIKE 'İ%' ESCAPE vc", []],
  // Dates past the last timestamp: comparisons do not raise, conversions do.
  ["d > '2000-01-01'::timestamp", []],
  ['d = ANY(ARRAY[ts, NULL])', []],
  ['d IN (ts, tstz)', []],
  ['d IS DISTINCT FROM ts', []],
  ['(d)::timestamp IS NULL', []],
  ["('300000-01-01'::date)::timestamptz > tstz", []],
  ["('300000-01-01'::date)::timestamp > ts", []],
  // = ANY converts a numeric[] to float8[] whole, before looking at anything.
  ['f8 = ANY(ARRAY[num, 1e400])', []],
  ['f4 = ANY(ARRAY[num])', []],
  // Arrays.
  ['ARRAY[]::int4[] = ia', []],
  ["ARRAY[1.5, '2']::int4[] <@ ia", []],
  ["'Abc' = ANY('{Abc,x}')", []],
  ['ARRAY[vc] = ta', []],
  ["ARRAY[vc] @> ARRAY['a']", []],
  ["ARRAY[vc] @> '{a}'", []],
  // Collations.
  ['(txt COLLATE "C") < (vc COLLATE "POSIX")', []],
  ['lower(txt COLLATE "C") = lower(vc)', []],
  // concat(): NULL arguments are left out, so it is never NULL; integers and uuid as text.
  ['concat(txt, NULL, i4) = concat(txt, i4::text)', []],
  ['concat(NULL) IS NULL', []],
  ["concat(txt, '-', i8, '-', u) LIKE '%-%'", []],
  ['length(concat(vc, $1::text, i2)) > 3', ['ab']],
  ['concat("Mixed Case", txt) = concat(txt, "Mixed Case")', []],
];

// ---------------------------------------------------------------------------------------------
// Postgres' answers.

/** 'true', 'false', null, or an error (a class or message, for the report). */
type Answer = string | null | { error: string };

type PostgresResult =
  { kind: 'rejected'; message: string } | { kind: 'answers'; answers: Answer[]; rowByRow: boolean };

let probes = 0;

async function postgresAnswers(
  client: pg.PoolClient,
  where: string,
  params: string[],
): Promise<PostgresResult> {
  try {
    const { rows } = await client.query<[string, string | null]>({
      text: `SELECT id, where_answer(${where}) FROM t ORDER BY id`,
      values: params,
      rowMode: 'array',
    });
    return { kind: 'answers', answers: rows.map(([, answer]) => answer), rowByRow: false };
  } catch {
    // Either the clause itself is refused (planning folds constants too) or some row fails.
    const refusal = await planningError(client, where, params);
    if (refusal !== undefined) return { kind: 'rejected', message: refusal };
    return {
      kind: 'answers',
      answers: await rowByRowAnswers(client, where, params),
      rowByRow: true,
    };
  }
}

/** Why Postgres refuses the clause before reading any row, if it does. */
async function planningError(
  client: pg.PoolClient,
  where: string,
  params: string[],
): Promise<string | undefined> {
  try {
    await client.query({ text: `EXPLAIN SELECT where_answer(${where}) FROM t`, values: params });
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * Evaluates the clause on each row in its own subtransaction, so that one row's error does not
 * hide the others' answers. The clause keeps its `$n`: they become the helper's arguments, of
 * the types Postgres itself inferred for them (read back from a PREPAREd statement).
 */
async function rowByRowAnswers(
  client: pg.PoolClient,
  where: string,
  params: string[],
): Promise<Answer[]> {
  const name = `probe_${++probes}`;
  await client.query(`PREPARE ${name} AS SELECT where_answer(${where}) FROM t`);
  const { rows: typeRows } = await client.query<{ type: string }>(
    `SELECT u.type::text AS type
       FROM pg_prepared_statements, unnest(parameter_types) WITH ORDINALITY AS u(type, n)
      WHERE name = $1 ORDER BY u.n`,
    [name],
  );
  await client.query(`DEALLOCATE ${name}`);
  const types = typeRows.map((row) => row.type);
  await client.query(`
    CREATE FUNCTION pg_temp.${name}(${types.join(', ')})
    RETURNS TABLE (row_id int4, answer text) LANGUAGE plpgsql AS $probe$
    #variable_conflict use_column
    DECLARE r record;
    BEGIN
      FOR r IN SELECT t.id AS k FROM t ORDER BY t.id LOOP
        row_id := r.k;
        BEGIN
          SELECT where_answer(${where}) INTO answer FROM t WHERE t.id = r.k;
        EXCEPTION WHEN others THEN
          answer := 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
        END;
        RETURN NEXT;
      END LOOP;
    END $probe$`);
  const { rows } = await client.query<[string, string | null]>({
    text: `SELECT row_id, answer FROM pg_temp.${name}(${types.map((t, i) => `$${i + 1}::${t}`).join(', ')})`,
    values: params,
    rowMode: 'array',
  });
  return rows.map(([, answer]) =>
    answer?.startsWith('ERROR ') ? { error: answer.slice(6) } : answer,
  );
}

// ---------------------------------------------------------------------------------------------
// Sluice's answers and the comparison.

interface Clause {
  index: number;
  where: string;
  params: string[];
}

interface Disagreement {
  clause: Clause;
  row?: Row;
  postgres: string;
  sluice: string;
}

interface Stats {
  clauses: number;
  compiled: number;
  bothRefused: number;
  refusedAsLimitation: number;
  refusalReasons: Map<string, number>;
  pairs: number;
  errorPairs: number;
  trueAnswers: number;
  rowByRow: number;
  sqlChecked: number;
  sqlSkipped: number;
}

function describe(answer: Answer | undefined): string {
  if (answer === undefined) return 'no answer';
  if (answer === null) return 'NULL';
  if (typeof answer === 'string') return answer;
  return `ERROR ${answer.error}`;
}

/** The evaluator's answer for one row: true/false/NULL, an error Postgres would raise, or a bug. */
function sluiceAnswer(evaluate: (row: Row) => unknown, row: Row): Answer | { bug: string } {
  try {
    const value = evaluate(row);
    if (value === null) return null;
    if (typeof value !== 'boolean') return { bug: `not a boolean but a ${typeof value}` };
    return String(value);
  } catch (error) {
    if (isEvaluationError(error)) return { error: `${error.code}: ${error.message}` };
    // The first frames are enough to find it; a whole stack per row would drown the report.
    const trace = (error as Error).stack ?? String(error);
    return { bug: trace.split('\n').slice(0, 4).join('\n') };
  }
}

const sameAnswer = (a: Answer, b: Answer | { bug: string }) =>
  typeof a === 'object' && a !== null
    ? typeof b === 'object' && b !== null && 'error' in b
    : a === b;

async function checkClause(
  client: pg.PoolClient,
  schema: TableSchema,
  rows: Row[],
  clause: Clause,
  stats: Stats,
): Promise<Disagreement[]> {
  const { where, params } = clause;
  let spec: FilterSpec | undefined;
  let refusal: string | undefined;
  try {
    spec = await compileShapeFilter(client, schema, where, params, DEFAULT_WHERE_LIMITS);
  } catch (error) {
    if (!(error instanceof SluiceError && error.code === 'SLUICE_ERR_SHAPE_INVALID')) {
      return [{ clause, postgres: '-', sluice: `compiler crashed: ${(error as Error).stack}` }];
    }
    refusal = `${error.details.field}: ${error.message}`;
  }
  if (refusal !== undefined) return checkRefusal(client, clause, refusal, stats);

  stats.compiled++;
  const result = await postgresAnswers(client, where, params);
  if (result.kind === 'rejected') {
    return [{ clause, postgres: `rejects: ${result.message}`, sluice: 'accepts' }];
  }
  if (result.rowByRow) stats.rowByRow++;
  const evaluate = compileNode(spec!.root);
  const found: Disagreement[] = [];
  let anyError = false;
  rows.forEach((row, i) => {
    const expected = result.answers[i]!;
    const actual = sluiceAnswer(evaluate, row);
    stats.pairs++;
    if (typeof expected === 'object' && expected !== null) {
      stats.errorPairs++;
      anyError = true;
    }
    if (actual === 'true') stats.trueAnswers++;
    if (typeof actual === 'object' && actual !== null) anyError = true;
    if (!sameAnswer(expected, actual) && found.length < 2) {
      const sluice =
        typeof actual === 'object' && actual && 'bug' in actual
          ? `BUG ${actual.bug}`
          : describe(actual);
      found.push({ clause, row, postgres: describe(expected), sluice });
    }
  });
  if (found.length === 0 && !anyError && clause.index % SQL_CHECK_EVERY === 0) {
    found.push(...(await checkFilterSql(client, clause, spec!, rows, evaluate, stats)));
  }
  return found;
}

async function checkRefusal(
  client: pg.PoolClient,
  clause: Clause,
  refusal: string,
  stats: Stats,
): Promise<Disagreement[]> {
  if ((await planningError(client, clause.where, clause.params)) !== undefined) {
    stats.bothRefused++;
    return [];
  }
  if (REFUSALS_EXPECTED.some((pattern) => pattern.test(refusal))) {
    stats.refusedAsLimitation++;
    const reason = refusal.replace(/"[^"]*"|\d+/g, '…');
    stats.refusalReasons.set(reason, (stats.refusalReasons.get(reason) ?? 0) + 1);
    return [];
  }
  return [{ clause, postgres: 'accepts', sluice: `refuses: ${refusal}` }];
}

/**
 * The snapshot path: filterSql's re-printed clause, with params read from transaction-local
 * settings, selects exactly the rows the evaluator finds TRUE.
 */
async function checkFilterSql(
  client: pg.PoolClient,
  clause: Clause,
  spec: FilterSpec,
  rows: Row[],
  evaluate: (row: Row) => unknown,
  stats: Stats,
): Promise<Disagreement[]> {
  const params = new Map<number, string>();
  const collect = (node: FilterNode): void => {
    if (node.op === 'param') params.set(node.index, node.value);
    childNodes(node).forEach(collect);
  };
  collect(spec.root);
  const sql = filterSql(spec.root);
  await client.query('BEGIN');
  let selected: string[];
  try {
    for (const [index, value] of params) {
      await client.query('SELECT set_config($1, $2, true)', [paramSettingName(index), value]);
    }
    const result = await client.query<[string]>({
      text: `SELECT id FROM t WHERE ${sql} ORDER BY id`,
      rowMode: 'array',
    });
    selected = result.rows.map(([id]) => id);
  } catch (error) {
    const code = (error as { code?: string }).code ?? '';
    // A row error the SELECT-list evaluation skipped (WHERE may reorder AND's operands).
    if (code.startsWith('22')) {
      stats.sqlSkipped++;
      return [];
    }
    return [
      { clause, postgres: `filterSql fails: ${(error as Error).message}\n${sql}`, sluice: '-' },
    ];
  } finally {
    await client.query('ROLLBACK');
  }
  stats.sqlChecked++;
  const expected = rows.filter((row) => evaluate(row) === true).map((row) => row.id!);
  if (expected.join() === selected.join()) return [];
  const missing = expected.filter((id) => !selected.includes(id));
  const extra = selected.filter((id) => !expected.includes(id));
  return [
    {
      clause,
      row: rows.find((row) => row.id === (missing[0] ?? extra[0])),
      postgres: `filterSql selects ${selected.length} rows (extra ids ${extra.slice(0, 5).join()})\n${sql}`,
      sluice: `TRUE on ${expected.length} rows (missing ids ${missing.slice(0, 5).join()})`,
    },
  ];
}

function report(disagreements: Disagreement[]): string {
  const shown = disagreements
    .slice(0, MAX_REPORTED)
    .map((d, i) =>
      [
        `#${i + 1} clause ${d.clause.index}: ${d.clause.where}`,
        `   params:   ${JSON.stringify(d.clause.params)}`,
        d.row ? `   row:      ${JSON.stringify(d.row)}` : undefined,
        `   postgres: ${d.postgres}`,
        `   sluice:   ${d.sluice}`,
      ]
        .filter((line) => line !== undefined)
        .join('\n'),
    );
  return (
    `${disagreements.length} disagreements (seed ${SEED}; rerun with WHERE_DIFF_SEED=${SEED}):\n\n` +
    shown.join('\n\n')
  );
}

test('the where evaluator agrees with Postgres on generated clauses and rows', async () => {
  const started = Date.now();
  const random = new Random(SEED);
  const rows = await createTable(random);
  const schema = (await loadTableSchema(pool, { schema: 'public', name: 't' }))!;
  const clauses: Clause[] = PINNED_CLAUSES.map(([where, params], index) => ({
    index,
    where,
    params,
  }));
  while (clauses.length < PINNED_CLAUSES.length + CLAUSE_COUNT) {
    const generator = new ClauseGenerator(random);
    const where = generator.clause();
    clauses.push({ index: clauses.length, where, params: generator.params });
  }

  const stats: Stats = {
    clauses: clauses.length,
    compiled: 0,
    bothRefused: 0,
    refusedAsLimitation: 0,
    refusalReasons: new Map(),
    pairs: 0,
    errorPairs: 0,
    trueAnswers: 0,
    rowByRow: 0,
    sqlChecked: 0,
    sqlSkipped: 0,
  };
  const disagreements: Disagreement[] = [];
  let next = 0;
  const worker = async () => {
    const client = await pool.connect();
    try {
      while (next < clauses.length) {
        const clause = clauses[next++]!;
        disagreements.push(...(await checkClause(client, schema, rows, clause, stats)));
      }
    } finally {
      client.release();
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, worker));
  disagreements.sort((a, b) => a.clause.index - b.clause.index);

  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `where differential (seed ${SEED}): ${rows.length} rows, ${stats.clauses} clauses, ` +
      `${stats.compiled} compiled, ${stats.bothRefused} refused by both, ` +
      `${stats.refusedAsLimitation} refused as documented limitations; ` +
      `${stats.pairs} (clause, row) pairs compared (${stats.trueAnswers} TRUE, ` +
      `${stats.errorPairs} errors), ${stats.rowByRow} clauses evaluated row by row; ` +
      `filterSql checked on ${stats.sqlChecked} clauses (${stats.sqlSkipped} skipped); ${seconds} s`,
  );
  if (process.env.WHERE_DIFF_VERBOSE) {
    for (const [reason, count] of [...stats.refusalReasons].sort((a, b) => b[1] - a[1])) {
      console.log(`  ${count}× ${reason}`);
    }
  }
  assert.ok(stats.pairs > 100_000, `only ${stats.pairs} pairs compared`);
  assert.equal(disagreements.length, 0, report(disagreements));
});
