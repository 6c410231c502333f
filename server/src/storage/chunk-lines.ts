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
  /**
   * The buffers the lines are in, in order; a line never spans two. A chunk grows by adding a
   * buffer, never by copying into a larger one: with a thousand shapes each growing its tail,
   * copies (and the fresh memory each larger buffer touches) were an eighth of replication's time.
   */
  #segments: Buffer[];
  /** Where each segment's first byte is in the chunk; the segments hold the chunk contiguously. */
  #segmentStarts: number[];
  #length: number;
  /** Each entry's line start, then its JSON's start: two numbers per entry. */
  #starts: number[];

  private constructor(bytes: Buffer, length: number, starts: number[]) {
    this.#segments = [bytes];
    this.#segmentStarts = [0];
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
   * caller checks: a line is one entry).
   */
  append(offsetText: string, json: string): void {
    // A UTF-16 code unit takes at most 3 bytes in UTF-8: room for the worst case, then the
    // bytes actually written count.
    const { bytes, at } = this.#openLine(offsetText, 3 * json.length);
    this.#closeLine(bytes, at + bytes.write(json, at, 'utf8'));
  }

  /** Appends `<offsetText> <json>\n` where the JSON is `source`'s bytes `from` to `to` (UTF-8). */
  appendBytes(offsetText: string, source: Buffer, from: number, to: number): void {
    const { bytes, at } = this.#openLine(offsetText, to - from);
    this.#closeLine(bytes, at + source.copy(bytes, at, from, to));
  }

  /**
   * Starts a line with room for `jsonBytes` of JSON: writes `<offsetText> ` and records where the
   * line and its JSON start. Returns the segment and the position in it where the JSON goes.
   */
  #openLine(offsetText: string, jsonBytes: number): { bytes: Buffer; at: number } {
    const start = this.#length;
    const bytes = this.#room(offsetText.length + 2 + jsonBytes);
    const base = this.#segmentStarts.at(-1)!;
    let at = start - base;
    // A few ASCII characters: stored one by one, cheaper than an encoding call for so few.
    for (let i = 0; i < offsetText.length; i++) bytes[at++] = offsetText.charCodeAt(i);
    bytes[at++] = 0x20;
    this.#starts.push(start, base + at);
    return { bytes, at };
  }

  /** Ends the line whose JSON ends at `end` of the last segment `bytes`. */
  #closeLine(bytes: Buffer, end: number): void {
    bytes[end] = 0x0a;
    this.#length = this.#segmentStarts.at(-1)! + end + 1;
  }

  /** Keeps the first `count` entries. */
  truncate(count: number): void {
    if (count >= this.count) return;
    this.#length = this.#starts[2 * count]!;
    this.#starts.length = 2 * count;
    // Segments wholly after the cut go; the one holding it takes the next appends.
    const keep = Math.max(1, this.#segmentOf(this.#length) + 1);
    this.#segments.length = this.#segmentStarts.length = keep;
  }

  /** Entry `index`'s JSON text. */
  json(index: number): string {
    return this.#text(this.#starts[2 * index + 1]!, this.#lineEnd(index) - 1);
  }

  /** The JSON texts of entries `from` to `to` (exclusive). */
  jsons(from: number, to: number): string[] {
    const texts: string[] = [];
    for (let i = from; i < to; i++) texts.push(this.json(i));
    return texts;
  }

  /** Entry `index`'s line without its newline (`<offset> <json>`). */
  lineText(index: number): string {
    return this.#text(this.#starts[2 * index]!, this.#lineEnd(index) - 1);
  }

  /**
   * The lines' bytes from byte `from` to byte `to`, as stored: views, not copies (appends never
   * change bytes already written), one per segment they cross.
   */
  slice(from: number, to: number): Buffer[] {
    const views: Buffer[] = [];
    for (let s = this.#segmentOf(from); s < this.#segments.length; s++) {
      const start = this.#segmentStarts[s]!;
      if (start >= to) break;
      const end = Math.min(to, this.#segmentEnd(s));
      if (end > Math.max(from, start)) {
        views.push(this.#segments[s]!.subarray(Math.max(from, start) - start, end - start));
      }
    }
    return views;
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
    let s = this.#segmentOf(from < to ? this.#starts[2 * from]! : 0);
    for (let i = from; i < to; i++) {
      if (i > from) body[at++] = 0x2c; // ,
      const jsonStart = this.#starts[2 * i + 1]!;
      while (jsonStart >= this.#segmentEnd(s)) s++;
      const base = this.#segmentStarts[s]!;
      at += this.#segments[s]!.copy(body, at, jsonStart - base, this.#lineEnd(i) - 1 - base);
    }
    for (const text of extra) {
      if (at > 1) body[at++] = 0x2c;
      at += body.write(text, at, 'utf8');
    }
    body[at] = 0x5d; // ]
    return body;
  }

  /**
   * Drops the room kept for appends (a sealed chunk takes no more): in the last segment, and in
   * the arrays, which keep room for about 16 more items each once grown (about 150 bytes per
   * array: a fifth of what an idle shape held, with its one-row snapshot chunk).
   */
  compact(): void {
    const last = this.#segments.length - 1;
    const used = this.#length - this.#segmentStarts[last]!;
    const segment = this.#segments[last]!;
    if (segment.length > used + (used >> 3)) {
      const exact = Buffer.allocUnsafeSlow(used);
      segment.copy(exact, 0, 0, used);
      this.#segments[last] = exact;
    }
    this.#segments = this.#segments.slice();
    this.#segmentStarts = this.#segmentStarts.slice();
    this.#starts = this.#starts.slice();
  }

  #lineEnd(index: number): number {
    return index + 1 < this.count ? this.#starts[2 * index + 2]! : this.#length;
  }

  /** Where segment `s`'s bytes end in the chunk (the last one's: where the lines end). */
  #segmentEnd(s: number): number {
    return s + 1 < this.#segments.length ? this.#segmentStarts[s + 1]! : this.#length;
  }

  /** The segment holding byte `position` (the last one for the end). */
  #segmentOf(position: number): number {
    let low = 0;
    let high = this.#segmentStarts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (this.#segmentStarts[middle]! <= position) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  /** Bytes `from` to `to` of one line, decoded. */
  #text(from: number, to: number): string {
    const s = this.#segmentOf(from);
    const base = this.#segmentStarts[s]!;
    return this.#segments[s]!.toString('utf8', from - base, to - base);
  }

  /**
   * The last segment, with room for `more` bytes: a new one when it has not. Segments double
   * from 256 bytes up to 64 kB (a line larger than that gets one of its own). Each is a buffer
   * of its own, never a slice of Node's shared 8 kB pool, which a small chunk kept for long (a
   * sealed one in the cache, an idle shape's) would keep whole, with whatever garbage shares
   * it: that made each of 10,000 idle shapes cost 11 kB.
   */
  #room(more: number): Buffer {
    const last = this.#segments.length - 1;
    const segment = this.#segments[last]!;
    const used = this.#length - this.#segmentStarts[last]!;
    if (used + more <= segment.length) return segment;
    const size = Math.max(more, Math.min(MAX_SEGMENT_BYTES, Math.max(256, 2 * segment.length)));
    const next = Buffer.allocUnsafeSlow(size);
    if (used === 0) {
      // An empty last segment (a new chunk's, or one left by a cut) is replaced.
      this.#segments[last] = next;
    } else {
      this.#segments.push(next);
      this.#segmentStarts.push(this.#length);
    }
    return next;
  }
}

/** Segments grow to this size; a chunk of 10 MB is then some 160 of them. */
const MAX_SEGMENT_BYTES = 64 * 1024;

const EMPTY = Buffer.alloc(0);
