/** One row of a subquery's result: the text of its columns (Postgres' output), NULL as null. */
export type Tuple = (string | null)[];

/**
 * A subquery's result as a set, for `IN` on a row with SQL's NULL rules: a tuple with a NULL
 * part never equals anything, but may make `x IN (…)` NULL rather than false. Tuples without
 * NULL parts are kept by key (hashed lookups); those with one (rare) in a list.
 */
export class SubqueryResult {
  readonly #keys = new Set<string>();
  readonly #withNull: Tuple[] = [];

  constructor(
    readonly arity: number,
    tuples: Iterable<Tuple>,
  ) {
    for (const tuple of tuples) {
      if (tuple.includes(null)) this.#withNull.push(tuple);
      else this.#keys.add(this.keyOf(tuple));
    }
  }

  /** The key of a tuple without NULL parts. */
  keyOf(tuple: Tuple): string {
    return this.arity === 1 ? tuple[0]! : JSON.stringify(tuple);
  }

  tupleOf(key: string): Tuple {
    return this.arity === 1 ? [key] : (JSON.parse(key) as Tuple);
  }

  get size(): number {
    return this.#keys.size + this.#withNull.length;
  }

  /** `tuple IN (result)`: true, false or NULL. */
  includes(tuple: Tuple): boolean | null {
    const hasNull = tuple.includes(null);
    if (!hasNull && this.#keys.has(this.keyOf(tuple))) return true;
    if (this.size === 0 || (!hasNull && this.#withNull.length === 0)) return false;
    // NULL when some member could equal it had its NULLs been known.
    const couldEqual = (member: Tuple) =>
      member.every((value, i) => value === null || tuple[i] === null || value === tuple[i]);
    if (this.#withNull.some(couldEqual)) return null;
    if (hasNull) for (const key of this.#keys) if (couldEqual(this.tupleOf(key))) return null;
    return false;
  }

  /** Keys (of tuples without NULL parts) in this result and not in `other`. */
  keysNotIn(other: SubqueryResult): string[] {
    return [...this.#keys].filter((key) => !other.#keys.has(key));
  }

  /** Whether both hold the same tuples with NULL parts (those cannot be moved by tag). */
  sameNullTuples(other: SubqueryResult): boolean {
    const text = (result: SubqueryResult) => result.#withNull.map((t) => JSON.stringify(t)).sort();
    return JSON.stringify(text(this)) === JSON.stringify(text(other));
  }

  /** For storage: every tuple. */
  tuples(): Tuple[] {
    return [...[...this.#keys].map((key) => this.tupleOf(key)), ...this.#withNull];
  }
}
