import { SluiceError } from '../errors/sluice-error.js';

/** Postgres sent nothing for too long during a query: the connection was destroyed. */
export class QueryTimeoutError extends Error {
  override readonly name = 'QueryTimeoutError';
  readonly code = 'SLUICE_DB_QUERY_TIMEOUT';

  constructor(limitMs: number, options?: ErrorOptions) {
    super(`no answer from Postgres for ${limitMs} ms; the connection was closed`, options);
  }
}

/**
 * The replica has not replayed the WAL position a query must see: the primary answers instead.
 * Not a failure of the replica (it does not count towards its breaker).
 */
export class ReplicaBehindError extends Error {
  override readonly name = 'ReplicaBehindError';
  readonly code = 'SLUICE_DB_REPLICA_BEHIND';

  constructor(replayed: string, required: string) {
    super(`the replica has replayed up to ${replayed}, and the query needs ${required}`);
  }
}

/** The database's breaker is open: the request fails at once, and may retry after `retryAfterS`. */
export class CircuitOpenError extends SluiceError {
  override readonly name = 'CircuitOpenError';

  constructor(database: 'primary' | 'replica', retryAfterS: number, options?: ErrorOptions) {
    super(
      'SLUICE_ERR_DB_CIRCUIT_OPEN',
      `the ${database} database failed repeatedly; its circuit breaker is open, retry in ${retryAfterS} s`,
      { retryAfterS },
      options,
    );
  }
}
