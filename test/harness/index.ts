export { startPostgres, type TestPostgres } from './start-postgres.js';
export {
  PostgresCluster,
  startCluster,
  type StartPostgresOptions,
  type StopMode,
} from '@sluice/local-postgres';
export {
  createTestDatabase,
  dropSlotsOf,
  type Queryable,
  type QueryTarget,
  type TestDatabase,
} from './test-database.js';
export { startStandby, StandbyCluster, type StartStandbyOptions } from './standby.js';
export { dropSlot, invalidateSlot, terminateWalsender } from './slot-faults.js';
export {
  FaultProxy,
  proxyTargetOf,
  startFaultProxy,
  type FaultMode,
  type FaultModeOptions,
  type ProxyTarget,
} from './fault-proxy.js';
export {
  findRedisServer,
  redisSkipReason,
  startRedis,
  startRedisCluster,
  startRedisSentinel,
  REDIS_INSTALL_HINT,
  type StartRedisOptions,
  type StartRedisSentinelOptions,
  type TestRedis,
  type TestRedisCluster,
  type TestRedisSentinel,
} from './start-redis.js';
