import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { CLIENT_ERROR_CODES, type ClientErrorCode } from './error-codes.js';
import {
  FetchBackoffAbortError,
  FetchError,
  InvalidShapeOptionsError,
  InvalidSignalError,
  MalformedResponseError,
  MissingHeadersError,
  MissingShapeHandleError,
  MissingShapeUrlError,
  ParserNullValueError,
  ReservedParamError,
} from './errors.js';
import * as clientApi from './index.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const documented = new Map(
  [...readme.matchAll(/^\|\s*`(\w+)`\s*\|\s*`(SLUICE_ERR_CLIENT_[A-Z_]+)`\s*\|([^|]+)\|/gm)].map(
    (m) => [m[2] ?? '', { name: m[1] ?? '', summary: (m[3] ?? '').trim() }],
  ),
);

test('client/README.md lists every client error code with its error name and summary', () => {
  for (const [code, { name, summary }] of Object.entries(CLIENT_ERROR_CODES)) {
    assert.deepEqual(documented.get(code), { name, summary }, `${code} in client/README.md`);
  }
});

test('client/README.md lists no client error code the table does not have', () => {
  assert.ok(documented.size > 0);
  for (const code of documented.keys())
    assert.ok(code in CLIENT_ERROR_CODES, `${code} is documented but unknown`);
});

const URL_ = 'http://sluice.invalid/v1/shape';
const raised: (Error & { code: ClientErrorCode })[] = [
  new FetchError(400, { text: '' }, {}, URL_),
  new FetchBackoffAbortError(),
  new MissingShapeUrlError(),
  new InvalidSignalError(),
  new MissingShapeHandleError(),
  new InvalidShapeOptionsError('x'),
  new ReservedParamError(['offset']),
  new ParserNullValueError('c'),
  new MissingHeadersError(URL_, ['electric-handle']),
  new MalformedResponseError(URL_, 'x'),
];

test('every exported error class carries its own code of the table, under the name it gives', () => {
  const exported = Object.values(clientApi).filter(
    (value) => typeof value === 'function' && value.prototype instanceof Error,
  );
  assert.deepEqual(
    new Set(raised.map((error) => error.constructor)),
    new Set(exported),
    'one error of each exported class',
  );
  assert.deepEqual(
    raised.map((error) => error.code).sort(),
    Object.keys(CLIENT_ERROR_CODES).sort(),
    'each code carried by exactly one class',
  );
  for (const error of raised) assert.equal(error.name, CLIENT_ERROR_CODES[error.code].name);
});
