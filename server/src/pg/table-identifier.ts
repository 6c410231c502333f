// Parsing of the `table` and `columns` shape parameters (docs/protocol.md §2) into the exact names
// Postgres stores in pg_catalog, and quoting of names for the SQL Sluice builds.
//
// The rules follow Electric's parser (packages/sync-service/lib/electric/postgres/identifiers.ex,
// `Identifiers.parse/1` and `parse_relation/1`; the columns split is in plug/utils.ex,
// `parse_columns_param/1`), so a request Electric accepts resolves to the same table here:
//   - a part in double quotes is taken verbatim, with `""` standing for one `"`;
//   - an unquoted part must look like a Postgres identifier (a letter or `_`, then letters,
//     marks, digits, `_` or `$`) and has ASCII A-Z folded to lower case. Postgres folds only
//     ASCII in multi-byte server encodings (scansup.c, downcase_identifier), and so does Electric;
//   - nothing else is allowed around or between the parts (no whitespace), again like Electric.
// Names longer than NAMEDATALEN-1 bytes cannot exist in Postgres, so they are refused early.

import { SluiceError } from '../errors/sluice-error.js';

export class InvalidIdentifierError extends SluiceError {
  override readonly name = 'InvalidIdentifierError';

  constructor(message: string) {
    super('SLUICE_ERR_SHAPE_INVALID_IDENTIFIER', message);
  }
}

export interface TableIdentifier {
  schema: string;
  name: string;
}

/** Postgres truncates identifiers to NAMEDATALEN - 1 = 63 bytes, so a longer one never matches. */
const MAX_IDENTIFIER_BYTES = 63;

const DOUBLE_QUOTE = 0x22;
const UNQUOTED_IDENTIFIER = /^[\p{L}_][\p{L}\p{M}_0-9$]*$/u;

/**
 * `items` → public.items, `Sch.Tbl` → sch.tbl, `"My Schema"."a.b"` → My Schema / a.b.
 * Throws InvalidIdentifierError for empty parts, unbalanced or stray quotes, more than two
 * parts, characters an unquoted identifier cannot have, or over-long names.
 */
export function parseTableIdentifier(text: string): TableIdentifier {
  const parts = splitIdentifiers(text, '.', 'table name');
  if (parts.length === 1) return { schema: 'public', name: parts[0]! };
  if (parts.length === 2) return { schema: parts[0]!, name: parts[1]! };
  throw new InvalidIdentifierError(
    `Invalid table name ${JSON.stringify(text)}: expected "table" or "schema.table", got ${parts.length} parts`,
  );
}

/** A single name, quoted or not: the schema of a `schema.*` entry of `SLUICE_TABLES`. */
export function parseIdentifier(text: string, what: string): string {
  const parts = splitIdentifiers(text, '.', what);
  if (parts.length !== 1) {
    throw new InvalidIdentifierError(
      `Invalid ${what} ${JSON.stringify(text)}: expected one name, got ${parts.length} parts`,
    );
  }
  return parts[0]!;
}

/**
 * The `columns` parameter: `id,"Title","a,b","q""x"` → [id, Title, a,b, q"x], in the given order.
 * Throws InvalidIdentifierError for empty names (`a,,b`, a trailing comma) and duplicates.
 */
export function parseColumnList(text: string): string[] {
  const columns = splitIdentifiers(text, ',', 'column list');
  const seen = new Set<string>();
  for (const column of columns) {
    if (seen.has(column)) {
      throw new InvalidIdentifierError(
        `Invalid column list: column ${quoteIdentifier(column)} is listed more than once`,
      );
    }
    seen.add(column);
  }
  return columns;
}

/** Always quotes, so any stored name (reserved words, mixed case, `"`) is safe in SQL. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** `"schema"."name"` for SQL. */
export function quoteTableIdentifier(table: TableIdentifier): string {
  return `${quoteIdentifier(table.schema)}.${quoteIdentifier(table.name)}`;
}

function splitIdentifiers(text: string, separator: '.' | ',', what: string): string[] {
  if (text.length === 0) throw new InvalidIdentifierError(`Invalid ${what}: it is empty`);
  const parts: string[] = [];
  let pos = 0;
  for (;;) {
    let part: string;
    if (text.charCodeAt(pos) === DOUBLE_QUOTE) {
      // Quoted: runs to the first `"` that is not the first half of a `""` pair.
      let value = '';
      let from = pos + 1;
      let close = -1;
      for (;;) {
        const q = text.indexOf('"', from);
        if (q === -1) break;
        if (text.charCodeAt(q + 1) === DOUBLE_QUOTE) {
          value += text.slice(from, q + 1);
          from = q + 2;
          continue;
        }
        value += text.slice(from, q);
        close = q;
        break;
      }
      if (close === -1) {
        throw new InvalidIdentifierError(
          `Invalid ${what} ${JSON.stringify(text)}: unterminated quoted identifier at position ${pos}`,
        );
      }
      if (value.length === 0) {
        throw new InvalidIdentifierError(
          `Invalid ${what} ${JSON.stringify(text)}: zero-length quoted identifier at position ${pos}`,
        );
      }
      pos = close + 1;
      if (pos < text.length && text[pos] !== separator) {
        throw new InvalidIdentifierError(
          `Invalid ${what} ${JSON.stringify(text)}: unexpected character after quoted identifier at position ${pos}`,
        );
      }
      part = value;
    } else {
      let end = text.indexOf(separator, pos);
      if (end === -1) end = text.length;
      const raw = text.slice(pos, end);
      if (raw.length === 0) {
        throw new InvalidIdentifierError(
          `Invalid ${what} ${JSON.stringify(text)}: empty identifier at position ${pos}`,
        );
      }
      if (!UNQUOTED_IDENTIFIER.test(raw)) {
        throw new InvalidIdentifierError(
          `Invalid ${what} ${JSON.stringify(text)}: unquoted identifier ${JSON.stringify(raw)} contains special characters (quote it with double quotes)`,
        );
      }
      part = foldAsciiLowerCase(raw);
      pos = end;
    }
    // Postgres names cannot hold one (its C strings end there): such a name never matches.
    if (part.includes('\0')) {
      throw new InvalidIdentifierError(
        `Invalid ${what}: identifier ${JSON.stringify(part)} contains a NUL character (%00)`,
      );
    }
    if (Buffer.byteLength(part, 'utf8') > MAX_IDENTIFIER_BYTES) {
      throw new InvalidIdentifierError(
        `Invalid ${what}: identifier ${quoteIdentifier(part)} is longer than ${MAX_IDENTIFIER_BYTES} bytes`,
      );
    }
    parts.push(part);
    if (pos >= text.length) return parts;
    pos++; // past the separator; a separator at the very end leaves an empty part
    if (pos >= text.length) {
      throw new InvalidIdentifierError(
        `Invalid ${what} ${JSON.stringify(text)}: empty identifier at position ${pos}`,
      );
    }
  }
}

function foldAsciiLowerCase(name: string): string {
  return name.replace(/[A-Z]+/g, (upper) => upper.toLowerCase());
}
