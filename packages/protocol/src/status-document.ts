import type { ServerState } from './wire-names.js';

/** Where the replication stream is (`replication.state` in `/v1/status`). */
export type ReplicationPhase = 'connecting' | 'streaming' | 'backoff';

/** A database circuit breaker's phase (`database.breaker` in `/v1/status`). */
export type BreakerPhase = 'closed' | 'open' | 'half_open';

/** The body of `GET /v1/status` (docs/protocol.md §7). */
export interface StatusDocument {
  status: ServerState;
  replication_available: boolean;
  since: string;
  replication: {
    state: ReplicationPhase;
    slot: string;
    lag_bytes: number | null;
    retained_wal_bytes: number | null;
    /** SQLSTATE when Postgres sent one, else a Node or Sluice code, with when it happened. */
    last_error: { code: string; message: string; at: string } | null;
    next_retry_at: string | null;
  };
  database: {
    primary: 'up' | 'down';
    replica: 'up' | 'down' | 'none';
    /** The primary's circuit breaker. */
    breaker: BreakerPhase;
  };
  shapes: { state: 'up' | 'read_only' | 'starting'; count: number };
  /** Where shape logs are kept, whether it answers, and the breaker in front of it. */
  storage: {
    backend: 'disk' | 'redis';
    state: 'up' | 'down';
    breaker: BreakerPhase;
    /** This server's id (a storage other servers share: Redis), else null. */
    instance: string | null;
    /** The id of the server that writes the shared storage, as last seen; null if none is known. */
    writer: string | null;
  };
}
