// Parser for the text form of Postgres arrays, as printed by array_out (arrayfuncs.c): the
// where-clause evaluator receives array columns in this form and must see the same elements,
// dimensions and lower bounds that Postgres compares.
//
// What array_out prints, and therefore all this parser accepts:
//   - `{}` for an empty array (of any dimensionality: empty arrays have no dimensions);
//   - otherwise nested braces, one level per dimension, every sub-array of a level the same
//     length, elements separated by the type's delimiter (`,`, or `;` for box);
//   - a `[lb:ub]` prefix per dimension followed by `=`, printed only when some lower bound is
//     not 1, e.g. `[0:1]={5,6}` or `[1:1][2:3]={{1,2}}`;
//   - an unquoted `NULL` for a null element;
//   - an element in double quotes when it is empty, equals "NULL" in any case, or contains
//     `{`, `}`, `"`, `\`, the delimiter or white space; inside the quotes `"` and `\` are
//     escaped with a backslash. Unquoted elements never contain any of those characters.
//
// This is deliberately not array_in: that input function also accepts white space around
// elements, backslashes outside quotes, `[ub]` bounds and `{{}}`, none of which array_out ever
// prints. Rejecting them turns a corrupted or misrouted value into an error instead of a
// silently different array.

/**
 * A parsed array. `elements` are flattened in row-major order (the order of the text, and of
 * Postgres' storage and `unnest`). The empty array `{}` has `dims` [], `lowerBounds` [] and
 * `elements` []; every other array has as many `lowerBounds` as `dims`, and as many elements as
 * the product of `dims`.
 */
export interface PgArray<T> {
  dims: number[];
  lowerBounds: number[];
  elements: (T | null)[];
}

export class PgArrayTextError extends Error {
  override readonly name = 'PgArrayTextError';
  readonly code = 'SLUICE_ARRAY_TEXT';

  constructor(message: string) {
    super(message);
  }
}

/** Postgres' MAXDIM: arrays have at most this many dimensions. */
const MAX_DIMS = 6;
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

/** The characters array_isspace() treats as white space, which force quoting. */
function isArraySpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f';
}

/**
 * Parses array_out output. `parseElement` receives the unescaped text of each non-null element
 * (errors it throws propagate unchanged); `delimiter` is the element type's typdelim.
 */
export function parseArrayText<T>(
  text: string,
  parseElement: (text: string) => T,
  delimiter = ',',
): PgArray<T> {
  if (delimiter.length !== 1 || '{}"\\'.includes(delimiter) || isArraySpace(delimiter)) {
    throw new PgArrayTextError(`invalid array delimiter ${JSON.stringify(delimiter)}`);
  }
  return new ArrayTextParser(text, parseElement, delimiter).parse();
}

class ArrayTextParser<T> {
  #pos = 0;
  /** Number of dimensions, known once the first element (not sub-array) is reached. */
  #ndim: number | undefined;
  /** Length of each dimension, known once the first sub-array of that level is closed. */
  readonly #dims: (number | undefined)[] = [];
  readonly #elements: (T | null)[] = [];

  constructor(
    readonly text: string,
    readonly parseElement: (text: string) => T,
    readonly delimiter: string,
  ) {}

  parse(): PgArray<T> {
    const bounds = this.text.startsWith('[') ? this.#parseBounds() : undefined;
    if (bounds === undefined && this.text === '{}') {
      return { dims: [], lowerBounds: [], elements: [] };
    }
    this.#parseLevel(0);
    if (this.#pos !== this.text.length) this.#fail('unexpected text after the array');
    const dims = this.#dims as number[]; // every level up to #ndim was closed at least once
    if (bounds === undefined)
      return { dims, lowerBounds: dims.map(() => 1), elements: this.#elements };
    if (bounds.length !== dims.length) {
      this.#fail(`${bounds.length} bounds declared for ${dims.length} dimensions`);
    }
    bounds.forEach(([lower, upper], i) => {
      if (upper - lower + 1 !== dims[i]) {
        this.#fail(
          `dimension ${i + 1} declared as [${lower}:${upper}] but has ${dims[i]} elements`,
        );
      }
    });
    return { dims, lowerBounds: bounds.map(([lower]) => lower), elements: this.#elements };
  }

  /** `[lb:ub]...=`, leaving #pos on the opening brace. */
  #parseBounds(): [number, number][] {
    const bounds: [number, number][] = [];
    const re = /\[(-?\d{1,10}):(-?\d{1,10})\]/y;
    for (;;) {
      re.lastIndex = this.#pos;
      const m = re.exec(this.text);
      if (m === null) break;
      const lower = Number(m[1]);
      const upper = Number(m[2]);
      // Postgres also needs upper + 1 to fit in an int4 (ArrayCheckBounds).
      if (lower < INT32_MIN || upper >= INT32_MAX || upper < lower) {
        this.#fail(`invalid array bounds [${m[1]}:${m[2]}]`);
      }
      if (bounds.length === MAX_DIMS) this.#fail(`more than ${MAX_DIMS} dimensions`);
      bounds.push([lower, upper]);
      this.#pos = re.lastIndex;
    }
    if (bounds.length === 0) this.#fail('malformed array bounds');
    if (this.text[this.#pos] !== '=') this.#fail('expected "=" after the array bounds');
    this.#pos++;
    return bounds;
  }

  /** One `{...}` at nesting `level` (0 for the outermost), including its closing brace. */
  #parseLevel(level: number): void {
    if (this.text[this.#pos] !== '{') this.#fail('expected "{"');
    if (level === MAX_DIMS) this.#fail(`more than ${MAX_DIMS} dimensions`);
    this.#pos++;
    let count = 0;
    for (;;) {
      if (this.text[this.#pos] === '{') {
        // A sub-array: only allowed above the level where the elements are.
        if (this.#ndim !== undefined && level + 1 >= this.#ndim) this.#fail('unexpected "{"');
        this.#parseLevel(level + 1);
      } else {
        // An element (or an empty sub-array, which array_out never prints: `{}` is whole).
        this.#ndim ??= level + 1;
        if (this.#ndim !== level + 1) this.#fail('expected "{" (sub-arrays of unequal depth)');
        this.#elements.push(this.#parseElement());
      }
      count++;
      const c = this.text[this.#pos++];
      if (c === '}') break;
      if (c !== this.delimiter) this.#fail(`expected "${this.delimiter}" or "}"`, this.#pos - 1);
    }
    const expected = this.#dims[level];
    if (expected === undefined) this.#dims[level] = count;
    else if (expected !== count) this.#fail('sub-arrays of unequal length');
  }

  #parseElement(): T | null {
    const { text } = this;
    if (text[this.#pos] === '"') return this.parseElement(this.#parseQuoted());
    const start = this.#pos;
    for (; this.#pos < text.length; this.#pos++) {
      const c = text[this.#pos]!;
      if (c === this.delimiter || c === '}') break;
      // array_out would have quoted an element containing any of these.
      if (c === '{' || c === '"' || c === '\\' || isArraySpace(c))
        this.#fail('unexpected character');
    }
    if (this.#pos === start) this.#fail('missing array element');
    const raw = text.slice(start, this.#pos);
    return raw.length === 4 && raw.toUpperCase() === 'NULL' ? null : this.parseElement(raw);
  }

  /** A double-quoted element, unescaped; #pos ends after the closing quote. */
  #parseQuoted(): string {
    const { text } = this;
    let out = '';
    let chunk = ++this.#pos;
    for (;;) {
      const c = text[this.#pos];
      if (c === undefined) this.#fail('unterminated quoted array element');
      if (c === '"') break;
      if (c === '\\') {
        out += text.slice(chunk, this.#pos);
        chunk = this.#pos + 1; // the escaped character starts the next chunk
        if (chunk >= text.length) this.#fail('unterminated quoted array element');
        this.#pos += 2;
      } else {
        this.#pos++;
      }
    }
    out += text.slice(chunk, this.#pos);
    this.#pos++;
    return out;
  }

  #fail(reason: string, at = this.#pos): never {
    const excerpt = this.text.length > 80 ? `${this.text.slice(0, 77)}...` : this.text;
    throw new PgArrayTextError(`malformed array text at offset ${at} (${reason}): ${excerpt}`);
  }
}
