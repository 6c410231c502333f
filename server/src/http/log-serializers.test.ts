import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redactedUrl } from './log-serializers.js';

test('every secret parameter is redacted, however its name is encoded; the rest is kept', () => {
  const cases: [string, string][] = [
    ['/v1/shape?table=items&secret=abc', '/v1/shape?table=items&secret=[redacted]'],
    ['/v1/shape?secret=abc&table=items', '/v1/shape?secret=[redacted]&table=items'],
    ['/v1/shape?%73ecret=abc', '/v1/shape?%73ecret=[redacted]'],
    ['/v1/shape?secret=a&secret=b', '/v1/shape?secret=[redacted]&secret=[redacted]'],
    ['/v1/shape?secret', '/v1/shape?secret=[redacted]'],
    ['/v1/shape?secrets=kept&my_secret=kept', '/v1/shape?secrets=kept&my_secret=kept'],
    ['/v1/shape?%E0%A4%A=1&secret=x', '/v1/shape?%E0%A4%A=1&secret=[redacted]'],
    ['/v1/health', '/v1/health'],
  ];
  for (const [url, expected] of cases) assert.equal(redactedUrl(url), expected, url);
});
