// Streaming parser for `COPY (...) TO STDOUT` in Postgres TEXT format (tab delimiter, `\N` for
// NULL), the hot path of initial snapshots.
//
// Why it can be fast: in text format Postgres escapes the delimiter, newline, carriage return
// and backslash inside values (copyto.c, CopyAttributeOutText), so a raw 0x0A byte always ends a
// row and a raw 0x09 always ends a field. UTF-8 continuation bytes are >= 0x80, so cutting the
// input at a newline never splits a character. The parser therefore decodes all complete rows of
// a chunk with one toString() call, splits with String.prototype.split (native), and only
// unescapes fields that contain a backslash (which includes `\N`). Only the unfinished tail of a
// chunk is kept, as bytes, until its newline arrives.
//
// Escapes understood are those COPY FROM accepts (copyfromparse.c): \b \f \n \r \t \v \\, octal
// \N, \NN, \NNN and hex \xN, \xNN (bytes, so \xC3\xA9 is "é"), and a backslash before any other
// character standing for that character. Postgres itself only emits the first group.

export type CopyRow = (string | null)[];

export class CopyParseError extends Error {
  override readonly name = 'CopyParseError';
  readonly code = 'SLUICE_COPY_TEXT';

  constructor(message: string) {
    super(message);
  }
}

export interface CopyTextParserOptions {
  /** When given, every row must have exactly this many fields (a cheap corruption check). */
  columns?: number;
}

const NEWLINE = 0x0a;
const BACKSLASH = 0x5c;

export class CopyTextParser {
  readonly #columns: number | undefined;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #sawEndMarker = false;
  /** Rows parsed so far. */
  rowCount = 0;

  constructor(options: CopyTextParserOptions = {}) {
    this.#columns = options.columns;
  }

  /** Parses a chunk; returns the rows it completed (possibly none). */
  push(chunk: Uint8Array): CopyRow[] {
    const buf = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const rows: CopyRow[] = [];
    let start = 0;
    if (this.#pendingBytes > 0) {
      const nl = buf.indexOf(NEWLINE);
      if (nl === -1) {
        this.#keep(buf, 0);
        return rows;
      }
      this.#pending.push(buf.subarray(0, nl));
      const line = Buffer.concat(this.#pending, this.#pendingBytes + nl);
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#parseLines(line.toString('utf8'), rows);
      start = nl + 1;
    }
    const last = buf.lastIndexOf(NEWLINE);
    if (last >= start) {
      this.#parseLines(buf.toString('utf8', start, last), rows);
      start = last + 1;
    }
    if (start < buf.length) this.#keep(buf, start);
    return rows;
  }

  /** Call at the end of the input: throws if it stopped in the middle of a row. */
  end(): void {
    if (this.#pendingBytes > 0) {
      throw new CopyParseError(
        `COPY data ended in the middle of a row (${this.#pendingBytes} bytes without a newline)`,
      );
    }
  }

  #keep(buf: Buffer, start: number): void {
    // A copy: the producer may reuse its buffer once this chunk has been handed over.
    const tail = Buffer.from(buf.subarray(start));
    this.#pending.push(tail);
    this.#pendingBytes += tail.length;
  }

  /** `text` holds one or more complete rows separated by '\n', without the final newline. */
  #parseLines(text: string, rows: CopyRow[]): void {
    if (this.#sawEndMarker) return;
    const lines = text.split('\n');
    const anyEscape = text.indexOf('\\') !== -1;
    const columns = this.#columns;
    for (const line of lines) {
      let row: CopyRow;
      if (!anyEscape || line.indexOf('\\') === -1) {
        row = columns === 0 && line.length === 0 ? [] : line.split('\t');
      } else {
        if (line === '\\.') {
          // End-of-data marker (old protocol, or data from a file): nothing follows.
          this.#sawEndMarker = true;
          return;
        }
        const fields = line.split('\t');
        row = fields;
        for (let i = 0; i < fields.length; i++) {
          const field = fields[i]!;
          if (field.indexOf('\\') !== -1)
            row[i] = field === '\\N' ? null : unescapeCopyField(field);
        }
      }
      if (columns !== undefined && row.length !== columns) {
        throw new CopyParseError(
          `COPY row ${this.rowCount + 1} has ${row.length} fields, expected ${columns}`,
        );
      }
      rows.push(row);
      this.rowCount++;
    }
  }
}

/** Rows of a COPY TEXT stream (e.g. a pg-copy-streams `to()` stream), one non-empty batch per input chunk. */
export async function* parseCopyTextBatches(
  source: AsyncIterable<Uint8Array>,
  options?: CopyTextParserOptions,
): AsyncGenerator<CopyRow[], void, undefined> {
  const parser = new CopyTextParser(options);
  for await (const chunk of source) {
    const rows = parser.push(chunk);
    if (rows.length > 0) yield rows;
  }
  parser.end();
}

/** Undoes COPY TEXT escaping in one field (that is not `\N`). */
export function unescapeCopyField(field: string): string {
  let out = '';
  let from = 0;
  let i = field.indexOf('\\');
  while (i !== -1) {
    const next = field.charCodeAt(i + 1);
    let replacement: string;
    switch (next) {
      case 0x6e: // n
        replacement = '\n';
        break;
      case 0x74: // t
        replacement = '\t';
        break;
      case 0x72: // r
        replacement = '\r';
        break;
      case 0x62: // b
        replacement = '\b';
        break;
      case 0x66: // f
        replacement = '\f';
        break;
      case 0x76: // v
        replacement = '\v';
        break;
      case BACKSLASH:
        replacement = '\\';
        break;
      default:
        if (Number.isNaN(next)) throw new CopyParseError('COPY field ends with a lone backslash');
        // Octal and hex escapes denote bytes, which may be parts of one UTF-8 character.
        if (isOctalDigit(next) || (next === 0x78 && isHexDigit(field.charCodeAt(i + 2)))) {
          return unescapeBytes(field);
        }
        replacement = field[i + 1]!;
    }
    out += field.slice(from, i) + replacement;
    from = i + 2;
    i = field.indexOf('\\', from);
  }
  return from === 0 ? field : out + field.slice(from);
}

/** The slow path for fields with octal or hex escapes: unescape at the byte level. */
function unescapeBytes(field: string): string {
  const src = Buffer.from(field, 'utf8');
  const dst = Buffer.allocUnsafe(src.length);
  let o = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c !== BACKSLASH) {
      dst[o++] = c;
      continue;
    }
    const next = src[++i];
    if (next === undefined) throw new CopyParseError('COPY field ends with a lone backslash');
    if (isOctalDigit(next)) {
      let value = next - 0x30;
      for (let k = 0; k < 2 && isOctalDigit(src[i + 1] ?? 0); k++)
        value = value * 8 + src[++i]! - 0x30;
      dst[o++] = value & 0xff;
    } else if (next === 0x78 && isHexDigit(src[i + 1] ?? 0)) {
      let value = hexValue(src[++i]!);
      if (isHexDigit(src[i + 1] ?? 0)) value = value * 16 + hexValue(src[++i]!);
      dst[o++] = value;
    } else {
      dst[o++] = SIMPLE_ESCAPES[next] ?? next;
    }
  }
  return dst.toString('utf8', 0, o);
}

const SIMPLE_ESCAPES: Record<number, number> = {
  0x62: 0x08, // b
  0x66: 0x0c, // f
  0x6e: 0x0a, // n
  0x72: 0x0d, // r
  0x74: 0x09, // t
  0x76: 0x0b, // v
};

function isOctalDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x37;
}

function isHexDigit(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function hexValue(c: number): number {
  return c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10;
}
