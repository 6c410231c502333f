import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from './load-config.js';

test('defaults apply when nothing is set', () => {
  const config = loadConfig({});
  assert.equal(config.port, 3000);
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.databaseUrl, undefined);
  assert.ok(Object.isFrozen(config));
});

test('values are parsed from the environment', () => {
  const config = loadConfig({ SLUICE_PORT: '8080', DATABASE_URL: 'postgres://u@h/db' });
  assert.equal(config.port, 8080);
  assert.equal(config.databaseUrl, 'postgres://u@h/db');
});

test('every problem is reported at once, naming the variable', () => {
  assert.throws(
    () =>
      loadConfig({ SLUICE_PORT: 'eighty', DATABASE_URL: 'mysql://x', SLUICE_LOG_LEVEL: 'loud' }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.code, 'SLUICE_ERR_CONFIG_INVALID');
      assert.equal(error.problems.length, 3);
      assert.match(error.message, /SLUICE_PORT must be an integer, got "eighty"/);
      assert.match(error.message, /DATABASE_URL must use the postgres:\/\/ scheme/);
      assert.match(error.message, /SLUICE_LOG_LEVEL must be one of/);
      return true;
    },
  );
});

test('out-of-range numbers are rejected', () => {
  assert.throws(() => loadConfig({ SLUICE_PORT: '70000' }), /between 0 and 65535/);
});
