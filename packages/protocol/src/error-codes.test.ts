import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ERROR_CODES } from './error-codes.js';

const docs = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
const documented = new Map(
  [...docs.matchAll(/^\|\s*`(SLUICE_ERR_[A-Z_]+)`\s*\|\s*(\d+)\s*\|([^|]+)\|/gm)].map((m) => [
    m[1] ?? '',
    { status: Number(m[2]), summary: (m[3] ?? '').trim() },
  ]),
);

test('docs/errors.md lists every error code with its status and summary', () => {
  for (const [code, { status, summary }] of Object.entries(ERROR_CODES)) {
    assert.deepEqual(documented.get(code), { status, summary }, `${code} in docs/errors.md`);
  }
});

test('docs/errors.md lists no code the table does not have', () => {
  for (const code of documented.keys())
    assert.ok(code in ERROR_CODES, `${code} is documented but unknown`);
});
