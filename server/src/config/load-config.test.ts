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

test('snapshots at once must leave pooled connections; filtered snapshots time out first', () => {
  assert.throws(
    () =>
      loadConfig({
        SLUICE_DB_POOL_SIZE: '4',
        SLUICE_MAX_CONCURRENT_SNAPSHOTS: '4',
        SLUICE_DB_STATEMENT_TIMEOUT_MS: '1000',
        SLUICE_FILTERED_SNAPSHOT_TIMEOUT_MS: '2000',
      }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems, [
        'SLUICE_MAX_CONCURRENT_SNAPSHOTS (4) must be below SLUICE_DB_POOL_SIZE (4)',
        'SLUICE_FILTERED_SNAPSHOT_TIMEOUT_MS (2000) must not be above SLUICE_DB_STATEMENT_TIMEOUT_MS (1000)',
      ]);
      return true;
    },
  );
  const config = loadConfig({ SLUICE_DB_POOL_SIZE: '4', SLUICE_MAX_CONCURRENT_SNAPSHOTS: '3' });
  assert.equal(config.maxConcurrentSnapshots, 3);
});

test('where clause limits are bounded so the parser and compiler cannot overflow the stack', () => {
  assert.throws(() => loadConfig({ SLUICE_WHERE_MAX_LENGTH: '16385' }), /SLUICE_WHERE_MAX_LENGTH/);
  assert.throws(() => loadConfig({ SLUICE_WHERE_MAX_DEPTH: '257' }), /SLUICE_WHERE_MAX_DEPTH/);
});

test('/metrics cannot require a secret that is not set; header names are checked', () => {
  assert.throws(
    () => loadConfig({ SLUICE_METRICS_REQUIRE_SECRET: 'true' }),
    /SLUICE_METRICS_REQUIRE_SECRET needs SLUICE_SECRET to be set/,
  );
  const config = loadConfig({
    SLUICE_METRICS_REQUIRE_SECRET: 'true',
    SLUICE_SECRET: 's',
    SLUICE_CLIENT_ADDRESS_HEADER: 'X-Forwarded-For',
  });
  assert.equal(config.metricsRequireSecret, true);
  assert.equal(config.clientAddressHeader, 'x-forwarded-for');
  assert.throws(
    () => loadConfig({ SLUICE_CLIENT_ADDRESS_HEADER: 'x-forwarded-for: 1' }),
    /SLUICE_CLIENT_ADDRESS_HEADER must be an HTTP header name/,
  );
  // Held long-polls last up to 40 s: a connection timeout cannot cut them.
  assert.throws(() => loadConfig({ SLUICE_CONNECTION_TIMEOUT_MS: '30000' }), /between 45000/);
});

test('Redis storage needs a redis:// or rediss:// URL', () => {
  assert.equal(loadConfig({}).storage, 'disk');
  assert.throws(
    () => loadConfig({ SLUICE_STORAGE: 'redis' }),
    /SLUICE_STORAGE=redis needs SLUICE_REDIS_URL to be set/,
  );
  assert.throws(
    () => loadConfig({ SLUICE_STORAGE: 'redis', SLUICE_REDIS_URL: 'http://h:6379' }),
    /SLUICE_REDIS_URL must use the redis:\/\/ or rediss:\/\/ scheme/,
  );
  assert.throws(() => loadConfig({ SLUICE_STORAGE: 'memory' }), /must be disk or redis/);
  assert.throws(() => loadConfig({ SLUICE_REDIS_KEY_PREFIX: 'a{b}' }), /SLUICE_REDIS_KEY_PREFIX/);
  const config = loadConfig({ SLUICE_STORAGE: 'redis', SLUICE_REDIS_URL: 'rediss://:pw@h:6380/1' });
  assert.equal(config.redisUrl, 'rediss://:pw@h:6380/1');
  assert.equal(config.redisKeyPrefix, 'sluice');
});

test('Redis Sentinel and Cluster options are parsed and checked against each other', () => {
  const base = { SLUICE_STORAGE: 'redis', SLUICE_REDIS_URL: 'redis://:pw@ignored:1/2' };
  const defaults = loadConfig(base);
  assert.equal(defaults.redisSentinels, undefined);
  assert.equal(defaults.redisSentinelName, 'mymaster');
  assert.equal(defaults.redisCluster, false);
  const sentinel = loadConfig({
    ...base,
    SLUICE_REDIS_SENTINELS: 's1:26379, 10.0.0.2:26380,[::1]:26381',
    SLUICE_REDIS_SENTINEL_NAME: 'shapes',
  });
  assert.deepEqual(sentinel.redisSentinels, [
    { host: 's1', port: 26379 },
    { host: '10.0.0.2', port: 26380 },
    { host: '::1', port: 26381 },
  ]);
  assert.equal(sentinel.redisSentinelName, 'shapes');
  for (const bad of ['s1', 's1:0', 's1:26379,', 's1:99999', 'a b:1']) {
    assert.throws(
      () => loadConfig({ ...base, SLUICE_REDIS_SENTINELS: bad }),
      /SLUICE_REDIS_SENTINELS must be a comma-separated list of host:port/,
      bad,
    );
  }
  assert.throws(
    () => loadConfig({ ...base, SLUICE_REDIS_SENTINEL_NAME: 'my master' }),
    /SLUICE_REDIS_SENTINEL_NAME must be/,
  );
  assert.throws(
    () => loadConfig({ ...base, SLUICE_REDIS_CLUSTER: 'true', SLUICE_REDIS_SENTINELS: 's:1' }),
    /SLUICE_REDIS_CLUSTER=true and SLUICE_REDIS_SENTINELS exclude each other/,
  );
  assert.throws(
    () => loadConfig({ ...base, SLUICE_REDIS_CLUSTER: 'true' }),
    /SLUICE_REDIS_CLUSTER=true needs db 0 in SLUICE_REDIS_URL, got "2"/,
  );
  const cluster = loadConfig({
    SLUICE_STORAGE: 'redis',
    SLUICE_REDIS_URL: 'redis://n1:7000',
    SLUICE_REDIS_CLUSTER: 'true',
  });
  assert.equal(cluster.redisCluster, true);
});
