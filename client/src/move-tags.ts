import type { MovePattern, MoveTag } from './messages.js';

/** The headers of an insert or update that concern moves. */
export interface TagHeaders {
  tags?: MoveTag[];
  removed_tags?: MoveTag[];
  active_conditions?: boolean[];
}

/** A tag's slots; `undefined` where the tag's disjunct does not use that position. */
type ParsedTag = (string | undefined)[];

const parseTag = (tag: MoveTag): ParsedTag => tag.split('/').map((slot) => slot || undefined);

/**
 * What a subquery shape's rows need for move events (Electric 1.7's wire form, applied as TanStack
 * DB's electric-db-collection applies it): each row's tags and active conditions, and an index from
 * a position's value to the rows whose tags hold it, so a move finds its rows without a scan.
 *
 * A where clause is a disjunction; each disjunct uses some positions (conditions). A row carries
 * one tag per disjunct and one active condition per position, and stays in the shape while some
 * disjunct has all its positions active. A move-out turns a position off for the rows holding the
 * pattern's value there; a move-in turns it back on (the rows that newly match arrive as inserts).
 *
 * Rows without active conditions (a shape whose tags are all it sends) leave when their last tag
 * matches a move-out.
 */
export class MoveTags {
  readonly #tags = new Map<string, Set<MoveTag>>();
  readonly #conditions = new Map<string, boolean[]>();
  /** Position → value → keys of the rows with a tag holding that value there. */
  #byPosition: Map<string, Set<string>>[] = [];
  /** The slots of every tag: fixed for a shape, so taken from the first tag seen. */
  #width: number | undefined;
  /** For each disjunct, the positions it uses: fixed by the where clause, so derived once. */
  #disjuncts: number[][] | undefined;

  /** An insert or update of `key`: adds its tags, drops its removed tags, stores its conditions. */
  change(key: string, headers: TagHeaders): void {
    const { tags, removed_tags: removed, active_conditions: conditions } = headers;
    if (!tags && !removed) return;
    let own = this.#tags.get(key);
    if (!own) this.#tags.set(key, (own = new Set()));
    for (const tag of tags ?? []) {
      const parsed = parseTag(tag);
      this.#width ??= parsed.length;
      // A tag of another width cannot be matched against patterns; the server never sends one.
      if (parsed.length !== this.#width) continue;
      own.add(tag);
      this.#index(parsed, key);
    }
    if (tags?.length && !this.#disjuncts) this.#disjuncts = tags.map(participating);
    for (const tag of removed ?? []) {
      const parsed = parseTag(tag);
      if (own.delete(tag) && parsed.length === this.#width) this.#unindex(parsed, key, own);
    }
    if (conditions && conditions.length > 0) this.#conditions.set(key, [...conditions]);
  }

  /** The row left the shape (a delete, or a move-out): its tags go. */
  forget(key: string): void {
    for (const tag of this.#tags.get(key) ?? []) this.#unindex(parseTag(tag), key, new Set());
    this.#tags.delete(key);
    this.#conditions.delete(key);
  }

  /** Applies a move-out; returns the keys of the rows no longer in the shape (now forgotten). */
  moveOut(patterns: readonly MovePattern[]): string[] {
    const gone: string[] = [];
    for (const pattern of patterns) {
      for (const key of this.#matching(pattern)) {
        if (this.#leaves(key, pattern)) {
          this.forget(key);
          gone.push(key);
        }
      }
    }
    return gone;
  }

  /** Applies a move-in: the pattern's position holds again for the rows that have its value. */
  moveIn(patterns: readonly MovePattern[]): void {
    for (const pattern of patterns) {
      for (const key of this.#matching(pattern)) {
        const conditions = this.#conditions.get(key);
        if (conditions) conditions[pattern.pos] = true;
      }
    }
  }

  /** Forgets everything (must-refetch: the shape's rows start over, possibly with a new clause). */
  clear(): void {
    this.#tags.clear();
    this.#conditions.clear();
    this.#byPosition = [];
    this.#width = undefined;
    this.#disjuncts = undefined;
  }

  tagsOf(key: string): ReadonlySet<MoveTag> | undefined {
    return this.#tags.get(key);
  }

  activeConditionsOf(key: string): readonly boolean[] | undefined {
    return this.#conditions.get(key);
  }

  /** Whether the move-out of `pattern` takes `key` out of the shape (updating its state if not). */
  #leaves(key: string, pattern: MovePattern): boolean {
    const own = this.#tags.get(key);
    if (!own) return false;
    const conditions = this.#conditions.get(key);
    if (conditions && this.#disjuncts) {
      conditions[pattern.pos] = false;
      // The index keeps the row's tags, so that a move-in can turn the position back on.
      return !this.#disjuncts.some((positions) => positions.every((pos) => conditions[pos]));
    }
    for (const tag of [...own]) {
      const parsed = parseTag(tag);
      if (parsed[pattern.pos] === pattern.value) {
        own.delete(tag);
        this.#unindex(parsed, key, own);
      }
    }
    return own.size === 0;
  }

  /** A copy: the caller changes the index while going through the keys. */
  #matching({ pos, value }: MovePattern): string[] {
    return [...(this.#byPosition[pos]?.get(value) ?? [])];
  }

  #index(tag: ParsedTag, key: string): void {
    tag.forEach((value, pos) => {
      if (value === undefined) return;
      const byValue = (this.#byPosition[pos] ??= new Map());
      let keys = byValue.get(value);
      if (!keys) byValue.set(value, (keys = new Set()));
      keys.add(key);
    });
  }

  /**
   * Takes a tag the row no longer has out of the index, except the slots one of its remaining
   * tags still holds (two disjuncts may share a position, `h1/h2/` and `h1//h3`).
   */
  #unindex(tag: ParsedTag, key: string, remaining: ReadonlySet<MoveTag>): void {
    const others = [...remaining].map(parseTag);
    tag.forEach((value, pos) => {
      if (value === undefined || others.some((other) => other[pos] === value)) return;
      const keys = this.#byPosition[pos]?.get(value);
      keys?.delete(key);
      if (keys?.size === 0) this.#byPosition[pos]?.delete(value);
    });
  }
}

/** The positions a tag's disjunct uses: its non-empty slots. */
function participating(tag: MoveTag): number[] {
  const positions: number[] = [];
  parseTag(tag).forEach((value, pos) => {
    if (value !== undefined) positions.push(pos);
  });
  return positions;
}
