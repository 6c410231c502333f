import { createHash } from 'node:crypto';
import type { Change, Row } from '../pg/transaction.js';
import { quoteIdentifier, quoteTableIdentifier } from '../pg/table-identifier.js';
import { compileFilter, compileNode, type SubqueryLookup } from '../where/filter-evaluator.js';
import { everyNode, topSubqueries, type FilterNode } from '../where/filter-spec.js';
import { filterSql } from '../where/filter-sql.js';
import { disjunctiveForm, type Literal } from '../where/disjunctive-form.js';
import { sqlTypeName } from '../where/pg-type.js';
import type { SubqueryResult, Tuple } from './subquery-result.js';

type SubqueryNode = Extract<FilterNode, { op: 'subquery' }>;
type RowChange = Exclude<Change, { kind: 'truncate' }>;

/** A move-in or move-out pattern: rows whose tag holds `value` at `pos`. */
export interface MovePattern {
  pos: number;
  value: string;
}

/** The tag headers of one row (docs/protocol.md §13.2). */
export interface RowTags {
  tags: string[];
  active_conditions: boolean[];
}

/** What a new result of the subqueries changes for the shape's clients. */
export interface ResultChange {
  moveOut: MovePattern[];
  moveIn: MovePattern[];
  /** Rows to query as newly matching: those whose columns hold one of these tuples. */
  moveInTuples: { node: SubqueryNode; tuples: Tuple[] }[];
  /** Set when the change cannot be told by tags: the shape must start over. */
  restart?: string;
}

/** At most this many tuples per subquery result are held (memory, and the stored copy). */
export const MAX_SUBQUERY_VALUES = 100_000;

/**
 * What a shape whose where clause holds subqueries keeps in memory: the current result of each
 * subquery it reads directly (nested ones are inside those queries, run by Postgres), the clause
 * in disjunctive form, and from them whether a row is in the shape and its tags. Pure: reading
 * the results is the caller's.
 */
export class SubqueryState {
  readonly subqueries: SubqueryNode[];
  readonly #disjuncts: Literal[][];
  /** Position of each literal, disjunct after disjunct. */
  readonly #literals: Literal[];
  #results = new Map<number, SubqueryResult>();
  readonly #evaluators = new Map<FilterNode, (row: Row) => unknown>();
  readonly #inner = new Map<SubqueryNode, ((row: Row) => boolean) | null>();

  /** `salt` makes tag values the shape's own (`tagSalt`). */
  constructor(
    readonly salt: string,
    root: FilterNode,
  ) {
    this.subqueries = topSubqueries(root);
    this.#disjuncts = disjunctiveForm(root);
    this.#literals = this.#disjuncts.flat();
    const lookup: SubqueryLookup = (node) => (row) =>
      this.#resultOf(node).includes(node.columns.map((column) => row[column.name] ?? null));
    for (const { node } of this.#literals) {
      if (this.#evaluators.has(node)) continue;
      let evaluate: (row: Row) => unknown;
      try {
        evaluate = compileNode(node, lookup);
      } catch {
        // A part Postgres would fail on when planning alone; the whole clause was accepted,
        // so another part decides (`true OR 1/0 = 1`): this one counts as NULL.
        evaluate = () => null;
      }
      this.#evaluators.set(node, evaluate);
    }
  }

  /**
   * Whether changes of the tables the subqueries read can change their results. A subquery
   * without nested ones is judged in memory, by its own clause on the rows before and after: a
   * row entering or leaving it, or changing the columns it selects. One with nested subqueries
   * always may. Most changes of a table such shapes read (a user's name) change no result and
   * cost no query.
   */
  mayChangeResults(changes: readonly RowChange[]): boolean {
    return changes.some((change) =>
      this.subqueries.some((node) => {
        if (node.query.oid !== change.relation.oid) {
          // A table only a nested subquery reads: judged by Postgres, at the refresh.
          return nestedTables(node).has(change.relation.oid);
        }
        const inner = this.#innerMatch(node);
        if (!inner) return true;
        const tuple = (row: Row) => JSON.stringify(node.query.select.map((c) => row[c] ?? null));
        if (change.kind === 'insert') return inner(change.newRow);
        if (change.kind === 'delete') return inner(change.oldRow);
        const before = change.oldRow ?? change.newRow;
        const was = inner(before);
        const is = inner(change.newRow);
        return was !== is || (is && tuple(before) !== tuple(change.newRow));
      }),
    );
  }

  /** A subquery's own clause as a function of its table's rows, unless it nests others. */
  #innerMatch(node: SubqueryNode): ((row: Row) => boolean) | undefined {
    const cached = this.#inner.get(node);
    if (cached !== undefined) return cached ?? undefined;
    const filter = node.query.filter;
    const match =
      filter === undefined
        ? () => true
        : topSubqueries(filter).length > 0
          ? null
          : compileFilter(filter);
    this.#inner.set(node, match);
    return match ?? undefined;
  }

  /** Whether the results are known (read at creation, or resumed from the stored ones). */
  get hasResults(): boolean {
    return this.subqueries.every((node) => this.#results.has(node.id));
  }

  setResults(results: Map<number, SubqueryResult>): void {
    this.#results = results;
  }

  get currentResults(): Map<number, SubqueryResult> {
    return this.#results;
  }

  /** Whether the row was in the shape under other results (those before a transaction). */
  matchesUnder(results: Map<number, SubqueryResult>, row: Row): boolean {
    const current = this.#results;
    this.#results = results;
    try {
      return this.matches(row);
    } finally {
      this.#results = current;
    }
  }

  #resultOf(node: SubqueryNode): SubqueryResult {
    const result = this.#results.get(node.id);
    if (!result) throw new Error(`subquery ${node.id} has no result yet`);
    return result;
  }

  /** Each literal's truth on the row (a NOT literal is true when its part is false). */
  activeConditions(row: Row): boolean[] {
    return this.#literals.map(({ node, negated }) => {
      let value: unknown;
      try {
        value = this.#evaluators.get(node)!(row);
      } catch {
        value = null; // an error Postgres would raise on this row: not TRUE
      }
      return negated ? value === false : value === true;
    });
  }

  /** Whether the row is in the shape: some disjunct has all its literals true. */
  matches(row: Row): boolean {
    return this.#included(this.activeConditions(row));
  }

  #included(active: boolean[]): boolean {
    let position = 0;
    return this.#disjuncts.some((conjunction) => {
      const start = position;
      position += conjunction.length;
      return conjunction.every((_, i) => active[start + i]);
    });
  }

  /** One tag per disjunct: its slots hold a hash at subquery literals, `1` at the others. */
  rowTags(row: Row): RowTags {
    const slots = this.#literals.map(({ node }) =>
      node.op === 'subquery' ? this.hash(node, tupleOf(node, row)) : '1',
    );
    const tags: string[] = [];
    let position = 0;
    for (const conjunction of this.#disjuncts) {
      const parts = slots.map((slot, i) =>
        i >= position && i < position + conjunction.length ? slot : '',
      );
      position += conjunction.length;
      tags.push(parts.join('/'));
    }
    return { tags, active_conditions: this.activeConditions(row) };
  }

  /**
   * The tag value of a tuple at a subquery literal, stable for the shape (Electric's form, an md5
   * of a per-shape salt and the value, each column named in a composite one; Electric salts with
   * the handle, this salt is the definition's).
   */
  hash(node: SubqueryNode, tuple: Tuple): string {
    const text = (value: string | null) => (value === null ? 'NULL' : `v:${value}`);
    const body =
      tuple.length === 1
        ? text(tuple[0]!)
        : tuple.map((value, i) => `${node.columns[i]!.name}:${text(value)}`).join('');
    return createHash('md5').update(`${this.salt}${body}`).digest('hex');
  }

  /**
   * Compares new results with the current ones. A tuple entering the result of a subquery
   * under IN moves rows in, one leaving moves them out; under NOT IN the other way round.
   * What tags cannot express (NULLs under NOT IN, a result becoming empty under NOT IN, the
   * rows of a composite NOT IN, a result past MAX_SUBQUERY_VALUES) restarts the shape.
   */
  compare(next: ReadonlyMap<number, SubqueryResult>): ResultChange {
    const change: ResultChange = { moveOut: [], moveIn: [], moveInTuples: [] };
    for (const node of this.subqueries) {
      const before = this.#resultOf(node);
      const after = next.get(node.id)!;
      if (after.size > MAX_SUBQUERY_VALUES) {
        change.restart = `a subquery returned more than ${MAX_SUBQUERY_VALUES} rows`;
        return change;
      }
      const added = after.keysNotIn(before).map((key) => after.tupleOf(key));
      const removed = before.keysNotIn(after).map((key) => before.tupleOf(key));
      const positions = this.#literals.flatMap((literal, pos) =>
        literal.node === node ? [{ pos, negated: literal.negated }] : [],
      );
      const negated = positions.some((p) => p.negated);
      const changed = added.length > 0 || removed.length > 0 || !before.sameNullTuples(after);
      // Outer NULLs: `NULL NOT IN (…)` turns from true to NULL when the result stops being
      // empty, and a composite row with a NULL part from false to NULL when a tuple it could
      // equal arrives; no tag names those rows. Columns declared NOT NULL have none.
      const outerNullsMayFlip =
        node.notNull !== true &&
        (node.columns.length > 1 || (before.size === 0) !== (after.size === 0));
      if (negated && changed && (!before.sameNullTuples(after) || outerNullsMayFlip)) {
        change.restart = 'a NOT IN subquery changed in a way tags cannot express';
        return change;
      }
      for (const { pos, negated: not } of positions) {
        const patterns = (tuples: Tuple[]) =>
          tuples.map((tuple) => ({ pos, value: this.hash(node, tuple) }));
        change.moveIn.push(...patterns(not ? removed : added));
        change.moveOut.push(...patterns(not ? added : removed));
      }
      const entering = negated ? removed : added;
      if (entering.length > 0) change.moveInTuples.push({ node, tuples: entering });
    }
    return change;
  }
}

/** The tables the subqueries nested in this one read. */
function nestedTables(node: SubqueryNode): Set<number> {
  const filter = node.query.filter;
  if (!filter) return new Set();
  return new Set(
    everyNode(filter).flatMap((inner) => (inner.op === 'subquery' ? [inner.query.oid] : [])),
  );
}

/** The row's values of the subquery's outer columns. */
function tupleOf(node: SubqueryNode, row: Row): Tuple {
  return node.columns.map((column) => row[column.name] ?? null);
}

/**
 * SQL selecting one subquery's result, run in the snapshot the caller holds (its `$n` values
 * bound as for the shape's clause).
 */
export function subqueryResultSql(node: SubqueryNode): string {
  const { query } = node;
  const where = query.filter ? ` WHERE ${filterSql(query.filter)}` : '';
  // Each value as its type's output function writes it, as replication and snapshots deliver
  // the rows compared with it: a cast to text differs for some types (bool gives 'true', not
  // 't'). format's %s uses the output function but writes NULL as '', hence the CASE.
  const columns = query.select
    .map((name) => {
      const column = quoteIdentifier(name);
      return `CASE WHEN ${column} IS NULL THEN NULL ELSE format('%s', ${column}) END`;
    })
    .join(', ');
  return `SELECT ${columns} FROM ${quoteTableIdentifier(query.table)}${where}`;
}

/**
 * The condition "the row's columns hold one of these tuples", with the tuples as bound text
 * arrays (one per column) starting at `$first`.
 */
export function tupleCondition(
  node: SubqueryNode,
  tuples: Tuple[],
  first: number,
): { sql: string; values: (string | null)[][] } {
  const columns = node.columns.map((column) => quoteIdentifier(column.name)).join(', ');
  const arrays = node.columns.map(
    (column, i) => `CAST(CAST($${first + i} AS text[]) AS ${sqlTypeName(column.type)}[])`,
  );
  return {
    sql: `((${columns}) IN (SELECT * FROM unnest(${arrays.join(', ')})))`,
    values: node.columns.map((_, i) => tuples.map((tuple) => tuple[i] ?? null)),
  };
}
