// Values in shape logs are Postgres text output (docs/protocol.md §4), and several output functions
// depend on session settings. Every connection whose output ends up in a log (snapshot queries,
// the replication stream, fallback queries) must use the same settings, or the same row would be
// spelled differently depending on the path it took (a timestamp in two time zones, a float with
// a different number of digits, bytea as escape or hex).

/** The settings, keyed by their Postgres names. */
export const SESSION_SETTINGS: Readonly<Record<string, string>> = Object.freeze({
  DateStyle: 'ISO, DMY',
  TimeZone: 'UTC',
  extra_float_digits: '1',
  IntervalStyle: 'iso_8601',
  bytea_output: 'hex',
});

/**
 * The libpq `options` startup parameter that applies SESSION_SETTINGS at connection start, for
 * `new pg.Client({ connectionString, options: sessionOptionsString() })` and for replication
 * connections (where SET cannot be issued before streaming starts).
 *
 * The server splits `options` on whitespace, with a backslash escaping the next character
 * (pg_split_opts in postinit.c), so the space in `ISO, DMY` and any backslash become `\ ` / `\\`.
 */
export function sessionOptionsString(
  settings: Readonly<Record<string, string>> = SESSION_SETTINGS,
): string {
  return Object.entries(settings)
    .map(([name, value]) => `-c ${escapeOption(name)}=${escapeOption(value)}`)
    .join(' ');
}

function escapeOption(text: string): string {
  return text.replace(/[\\\s]/g, (c) => `\\${c}`);
}
