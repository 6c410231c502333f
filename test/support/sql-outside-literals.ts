/**
 * SQL text with its string literals (`'…'` with `''` inside, `E'…'` with backslash escapes)
 * blanked out: what is left is the statement's syntax, where text a client sent must never be.
 */
export function sqlOutsideLiterals(sql: string): string {
  let out = '';
  let i = 0;
  while (i < sql.length) {
    if (sql[i] !== "'") {
      out += sql[i];
      i++;
      continue;
    }
    const escapes = /[eE]$/.test(out) && !/[A-Za-z0-9_$][eE]$/.test(out);
    i++;
    while (i < sql.length) {
      if (escapes && sql[i] === '\\') i += 2;
      else if (sql[i] === "'" && sql[i + 1] === "'") i += 2;
      else if (sql[i] === "'") break;
      else i++;
    }
    i++;
    out += "''";
  }
  return out;
}
