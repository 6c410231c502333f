export {
  resolvePostgresBinaries,
  runTool,
  makeOwnedDir,
  type PostgresBinaries,
} from './postgres-binaries.js';
export {
  PostgresCluster,
  DEFAULT_SETTINGS,
  createClusterDir,
  freePort,
  openCluster,
  startCluster,
  type OpenClusterOptions,
  type StartPostgresOptions,
  type StopMode,
} from './postgres-cluster.js';
