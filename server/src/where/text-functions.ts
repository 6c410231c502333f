import type { TextRules } from './filter-spec.js';
import { EvaluationError } from './pg-values.js';

/**
 * lower() and upper() as the collation's provider does them. C and POSIX change ASCII letters
 * only. Other libc locales (and the builtin C.UTF-8) map one character to one character
 * (towlower/towupper): where Unicode's full mapping has several characters (İ lowers to i plus
 * a combining dot, ß uppers to SS) libc keeps one, the first for lowering, the character itself
 * for uppering. ICU maps whole strings, as JavaScript does.
 */
export function mapCase(text: string, upper: boolean, rules: TextRules): string {
  if (rules.caseMapping === 'full') return upper ? text.toUpperCase() : text.toLowerCase();
  if (rules.caseMapping === 'ascii') {
    return upper
      ? text.replace(/[a-z]+/g, (s) => s.toUpperCase())
      : text.replace(/[A-Z]+/g, (s) => s.toLowerCase());
  }
  if (/^[\u0000-\u007f]*$/.test(text)) return upper ? text.toUpperCase() : text.toLowerCase();
  let result = '';
  for (const char of text) {
    const mapped = upper ? char.toUpperCase() : char.toLowerCase();
    const first = String.fromCodePoint(mapped.codePointAt(0)!);
    result += first.length === mapped.length ? mapped : upper ? char : first;
  }
  return result;
}

const MATCHERS_KEPT = 256;
const matchers = new Map<string, (text: string) => boolean>();

/**
 * A LIKE pattern as a matcher: `%` any characters, `_` one character, the escape character
 * (backslash unless ESCAPE says otherwise, none for ESCAPE '') makes the next one literal.
 * Matching is by character, exact (deterministic collations), and covers the whole text.
 * Recent patterns are kept: a clause usually has one constant pattern.
 */
export function likeMatcher(pattern: string, escape: string): (text: string) => boolean {
  const key = `${escape}\u0000${pattern}`;
  let matcher = matchers.get(key);
  if (!matcher) {
    matcher = buildMatcher(pattern, escape);
    if (matchers.size >= MATCHERS_KEPT) matchers.delete(matchers.keys().next().value!);
    matchers.set(key, matcher);
  }
  return matcher;
}

function buildMatcher(pattern: string, escape: string): (text: string) => boolean {
  const escapeChars = [...escape];
  if (escapeChars.length > 1) {
    throw new EvaluationError('22019', 'invalid escape string');
  }
  const escapeChar = escapeChars[0];
  let source = '';
  let escaped = false;
  for (const char of pattern) {
    if (escaped) {
      source += literal(char);
      escaped = false;
    } else if (char === escapeChar) {
      escaped = true;
    } else if (char === '%') {
      source += '[^]*';
    } else if (char === '_') {
      source += '.';
    } else {
      source += literal(char);
    }
  }
  if (escaped) {
    throw new EvaluationError('22025', 'LIKE pattern must not end with escape character');
  }
  const regex = new RegExp(`^${source}$`, 'su');
  return (text) => regex.test(text);
}

function literal(char: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(char) ? `\\${char}` : char;
}
