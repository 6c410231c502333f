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
    result +=
      first.length === mapped.length ? mapped : upper ? (SIMPLE_UPPER.get(char) ?? char) : first;
  }
  return result;
}

/**
 * The characters whose full uppercase has several characters (JavaScript's only mapping) but
 * whose one-character mapping, which towupper uses, is another character: Greek vowels with
 * ypogegrammeni, e.g. ᾳ → ᾼ (full: ΑΙ). Every other such character maps to itself (ß, ŉ, ﬀ).
 */
const SIMPLE_UPPER = new Map<string, string>([
  ...[0x1f80, 0x1f90, 0x1fa0].flatMap((base) =>
    Array.from({ length: 8 }, (_, i): [string, string] => [
      String.fromCodePoint(base + i),
      String.fromCodePoint(base + i + 8),
    ]),
  ),
  ['\u1fb3', '\u1fbc'],
  ['\u1fc3', '\u1fcc'],
  ['\u1ff3', '\u1ffc'],
]);

/**
 * like_escape(): rewrites a pattern with ESCAPE `escape` into the backslash form LIKE matches
 * with (the escape character becomes a backslash, literal backslashes are doubled; an empty
 * escape means none). Postgres applies it before matching, and before ILIKE lowercases the
 * pattern, so an escape letter is found in the pattern as written.
 */
export function likeEscape(pattern: string, escape: string): string {
  const chars = [...escape];
  if (chars.length === 0) return pattern.replace(/\\/g, '\\\\');
  if (chars.length > 1) throw new EvaluationError('22025', 'invalid escape string');
  const escapeChar = chars[0];
  if (escapeChar === '\\') return pattern;
  let result = '';
  let afterEscape = false;
  for (const char of pattern) {
    if (char === escapeChar && !afterEscape) {
      result += '\\';
      afterEscape = true;
    } else {
      // A backslash stays literal: doubled, unless the escape character already escapes it.
      result += char === '\\' && !afterEscape ? '\\\\' : char;
      afterEscape = false;
    }
  }
  return result;
}

const PATTERNS_KEPT = 256;
const patterns = new Map<string, string[]>();

/** A pattern split into characters; recent ones are kept, a clause usually has one. */
function patternChars(pattern: string): string[] {
  let chars = patterns.get(pattern);
  if (!chars) {
    chars = [...pattern];
    if (patterns.size >= PATTERNS_KEPT) patterns.delete(patterns.keys().next().value!);
    patterns.set(pattern, chars);
  }
  return chars;
}

/**
 * `text LIKE pattern` for a pattern in backslash form: `%` any characters, `_` one character,
 * a backslash makes the next character literal. Matching is by character, exact
 * (deterministic collations), and covers the whole text.
 */
export function likeMatches(text: string, pattern: string): boolean {
  return matchText([...text], 0, patternChars(pattern), 0) === MATCH;
}

const MATCH = 1;
const NO_MATCH = 0;
/** No match here, nor at any later start: the text ran out (LIKE_ABORT). */
const ABORT = -1;

const endsWithEscape = () =>
  new EvaluationError('22025', 'LIKE pattern must not end with escape character');

/**
 * MatchText of like_match.c, step for step, because the walk decides more than the result: a
 * pattern ending in an escape character raises only when matching gets that far, so
 * `'abc' LIKE 'x\'` is false while `'abc' LIKE 'a\'` is an error.
 */
function matchText(t: string[], ti: number, p: string[], pi: number): number {
  if (p.length - pi === 1 && p[pi] === '%') return MATCH;
  while (ti < t.length && pi < p.length) {
    const char = p[pi];
    if (char === '\\') {
      if (++pi >= p.length) throw endsWithEscape();
      if (p[pi] !== t[ti]) return NO_MATCH;
    } else if (char === '%') {
      return matchPercent(t, ti, p, pi + 1);
    } else if (char !== '_' && char !== t[ti]) {
      return NO_MATCH;
    }
    ti++;
    pi++;
  }
  if (ti < t.length) return NO_MATCH;
  while (pi < p.length && p[pi] === '%') pi++;
  return pi >= p.length ? MATCH : ABORT;
}

/** The rest of the pattern after a `%`, tried at every later text position. */
function matchPercent(t: string[], ti: number, p: string[], pi: number): number {
  // `%` and `_` right after: N underscores and any percents match at least N characters.
  for (; pi < p.length; pi++) {
    if (p[pi] === '_') {
      if (ti >= t.length) return ABORT;
      ti++;
    } else if (p[pi] !== '%') {
      break;
    }
  }
  if (pi >= p.length) return MATCH;
  let first = p[pi];
  if (first === '\\') {
    if (pi + 1 >= p.length) throw endsWithEscape();
    first = p[pi + 1];
  }
  for (; ti < t.length; ti++) {
    if (t[ti] !== first) continue;
    const matched = matchText(t, ti, p, pi);
    if (matched !== NO_MATCH) return matched;
  }
  return ABORT;
}
