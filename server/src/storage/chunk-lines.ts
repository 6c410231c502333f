/**
 * A chunk's entries as the bytes of their lines, `<offset> <json>\n`, the chunk file's format
 * (chunk-file.ts), with where each line and its JSON start. An entry's JSON is written to bytes
 * once, when it is appended or read from storage: a flush writes the lines as they are, and a
 * response copies the JSON texts out of them (`jsonArray`) with no string per entry kept in
 * memory, decoded, joined or encoded again. A chunk of a large snapshot held as strings kept
 * every row alive through the young generation's collections until the chunk was sealed: most of
 * a sync's garbage collection time (docs/performance.md, "Where the time goes").
 */
export class ChunkLines {
  #bytes: Buffer;
  #length: number;
  /** Each entry's line start, then its JSON's start: two numbers per entry. */
  readonly #starts: number[];

  private constructor(bytes: Buffer, length: number, starts: number[]) {
    this.#bytes = bytes;
    this.#length = length;
    this.#starts = starts;
  }

  static empty(): ChunkLines {
    return new ChunkLines(EMPTY, 0, []);
  }

  /**
   * Lines already in `bytes` (a chunk file's), given where each entry's line and JSON start;
   * `length` ends the last line (its newline included).
   */
  static over(bytes: Buffer, length: number, starts: number[]): ChunkLines {
    return new ChunkLines(bytes, length, starts);
  }

  /** Entries held. */
  get count(): number {
    return this.#starts.length / 2;
  }

  /** Bytes of the first `count` lines (all of them by default). */
  bytesOf(count = this.count): number {
    return count >= this.count ? this.#length : this.#starts[2 * count]!;
  }

  /**
   * Appends `<offsetText> <json>\n`. `offsetText` is ASCII; `json` must hold no newline (the
   * caller checks: a line is one entry). `limit`: the bytes at which the chunk will be sealed,
   * to size its buffer (0 when they are only read back, not appended: the buffer just doubles).
   */
  append(offsetText: string, json: string, limit: number): void {
    const start = this.#length;
    // A UTF-16 code unit takes at most 3 bytes in UTF-8: room for the worst case, then the
    // bytes actually written count.
    this.#reserve(offsetText.length + 2 + 3 * json.length, limit);
    const bytes = this.#bytes;
    let at = start;
    // A few ASCII characters: stored one by one, cheaper than an encoding call for so few.
    for (let i = 0; i < offsetText.length; i++) bytes[at++] = offsetText.charCodeAt(i);
    bytes[at++] = 0x20;
    const jsonStart = at;
    at += bytes.write(json, at, 'utf8');
    bytes[at++] = 0x0a;
    this.#starts.push(start, jsonStart);
    this.#length = at;
  }

  /** Keeps the first `count` entries. */
  truncate(count: number): void {
    if (count >= this.count) return;
    this.#length = this.#starts[2 * count]!;
    this.#starts.length = 2 * count;
  }

  /** Entry `index`'s JSON text. */
  json(index: number): string {
    return this.#bytes.toString('utf8', this.#starts[2 * index + 1], this.#lineEnd(index) - 1);
  }

  /** The JSON texts of entries `from` to `to` (exclusive). */
  jsons(from: number, to: number): string[] {
    const texts: string[] = [];
    for (let i = from; i < to; i++) texts.push(this.json(i));
    return texts;
  }

  /** Entry `index`'s line without its newline (`<offset> <json>`). */
  lineText(index: number): string {
    return this.#bytes.toString('utf8', this.#starts[2 * index], this.#lineEnd(index) - 1);
  }

  /**
   * The lines' bytes from byte `from` to byte `to`, as stored: a view, not a copy (appends never
   * change bytes already written, and a larger buffer is a new one).
   */
  slice(from: number, to: number): Buffer {
    return this.#bytes.subarray(from, to);
  }

  /**
   * `[<json>,<json>,…,<extra>…]` for entries `from` to `to` (exclusive), then `extra` (JSON texts
   * made for this response), as UTF-8: the entries' bytes are copied, not decoded or encoded.
   */
  jsonArray(from: number, to: number, extra: readonly string[]): Buffer {
    let size = 2 + Math.max(0, to - from + extra.length - 1);
    for (let i = from; i < to; i++) size += this.#lineEnd(i) - 1 - this.#starts[2 * i + 1]!;
    for (const text of extra) size += Buffer.byteLength(text);
    const body = Buffer.allocUnsafe(size);
    let at = 0;
    body[at++] = 0x5b; // [
    for (let i = from; i < to; i++) {
      if (i > from) body[at++] = 0x2c; // ,
      at += this.#bytes.copy(body, at, this.#starts[2 * i + 1], this.#lineEnd(i) - 1);
    }
    for (const text of extra) {
      if (at > 1) body[at++] = 0x2c;
      at += body.write(text, at, 'utf8');
    }
    body[at] = 0x5d; // ]
    return body;
  }

  /**
   * Drops the room kept for appends (a sealed chunk takes no more): a chunk grown by doubling may
   * hold up to twice its bytes.
   */
  compact(): void {
    if (this.#bytes.length > this.#length + (this.#length >> 3)) {
      this.#bytes = this.#copy(this.#length);
    }
  }

  #lineEnd(index: number): number {
    return index + 1 < this.count ? this.#starts[2 * index + 2]! : this.#length;
  }

  /**
   * Room for `more` bytes. The buffer doubles, but a chunk already an eighth of its `limit` is
   * being filled in bulk (a snapshot, a large transaction): it gets its whole limit at once, so
   * its bytes are copied once or twice rather than at every doubling and again by `compact`.
   */
  #reserve(more: number, limit: number): void {
    const needed = this.#length + more;
    if (needed <= this.#bytes.length) return;
    const bulk = needed > limit >> 3 ? limit + (limit >> 6) : 0;
    this.#bytes = this.#copy(Math.max(needed, 2 * this.#bytes.length, 256, bulk));
  }

  /**
   * The lines in a buffer of `size` bytes of their own: never a slice of Node's shared 8 kB pool,
   * which a small chunk kept for long (a sealed one in the cache, an idle shape's) would keep
   * whole, with whatever garbage shares it. That made each of 10,000 idle shapes cost 11 kB.
   */
  #copy(size: number): Buffer {
    const bytes = Buffer.allocUnsafeSlow(size);
    this.#bytes.copy(bytes, 0, 0, this.#length);
    return bytes;
  }
}

const EMPTY = Buffer.alloc(0);
