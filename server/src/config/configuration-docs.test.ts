import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { CONFIG_OPTIONS } from './config-options.js';

const docs = readFileSync(new URL('../../../docs/configuration.md', import.meta.url), 'utf8');

/** `| \`NAME\` | default | meaning |` rows of the table in docs/configuration.md. */
function documentedRows(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const match of docs.matchAll(/^\|\s*`([A-Z_]+)`\s*\|([^|]+)\|/gm)) {
    rows.set(match[1] ?? '', (match[2] ?? '').trim());
  }
  return rows;
}

/** A default as the docs spell it (a list default, e.g. of Sentinels, would be JSON). */
function shown(value: string | number | boolean | object): string {
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

test('docs/configuration.md documents every option with its default', () => {
  const rows = documentedRows();
  for (const spec of Object.values(CONFIG_OPTIONS)) {
    assert.ok(rows.has(spec.env), `${spec.env} is missing from docs/configuration.md`);
    const expected = spec.default === undefined ? 'unset' : `\`${shown(spec.default)}\``;
    assert.equal(rows.get(spec.env), expected, `default of ${spec.env}`);
  }
});

test('docs/configuration.md documents no option the code does not have', () => {
  const known = new Set(Object.values(CONFIG_OPTIONS).map((spec) => spec.env));
  for (const name of documentedRows().keys())
    assert.ok(known.has(name), `${name} is documented but unknown`);
});

test('server/.env.example lists every option with its default, and nothing else', () => {
  const example = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
  const listed = new Map(
    [...example.matchAll(/^# ([A-Z_]+)=(.*)$/gm)].map((m) => [m[1] ?? '', m[2] ?? '']),
  );
  for (const spec of Object.values(CONFIG_OPTIONS)) {
    assert.equal(
      listed.get(spec.env),
      spec.default === undefined ? '' : shown(spec.default),
      spec.env,
    );
  }
  assert.equal(listed.size, Object.keys(CONFIG_OPTIONS).length);
});
