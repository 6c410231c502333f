/** What went wrong, as `/v1/status` and the logs show it. */
export interface Problem {
  /** SQLSTATE when Postgres sent one, else a Node or Sluice code (`ECONNREFUSED`, …). */
  code: string;
  message: string;
}

/** Human words for the failures that stop replication or queries (docs/protocol.md §7). */
const MEANINGS: Record<string, string> = {
  '57P01':
    'the walsender or session was terminated (pg_terminate_backend, or Postgres shutting down)',
  '57P02': 'Postgres crashed and is restarting',
  '57P03': 'Postgres is starting up or shutting down and refuses connections',
  '55006': 'the replication slot is in use by another process',
  '42704': 'the replication slot does not exist',
  '55000': 'Postgres is not in a state that allows this (wal_level, or an invalidated slot)',
  '42501': 'the role lacks the REPLICATION privilege',
  '28000': 'the role may not connect this way (REPLICATION privilege or pg_hba.conf)',
  '28P01': 'password authentication failed',
  '3D000': 'the database does not exist',
  '53300': 'Postgres has no free connection slots',
  ECONNREFUSED: 'connection refused (Postgres is down or not listening)',
  ECONNRESET: 'connection reset by the network or Postgres',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENOTFOUND: 'host name not found',
  CONNECTION_LOST: 'the connection ended unexpectedly',
  CONNECT_TIMEOUT: 'connecting timed out (no answer from Postgres)',
  POOL_TIMEOUT: 'every pooled connection stayed busy for the whole connect timeout',
  REPLICATION_UNDECODABLE:
    'a replication message could not be read (the stream restarts from the slot)',
  REPLICATION_SILENT: 'the replication connection went silent (no keepalive answered a ping)',
};

/**
 * A failure as `{ code, message }`: its code (`problemCode`) and the original text after the
 * code's meaning.
 */
export function describeProblem(error: unknown): Problem {
  const e = (error ?? {}) as { message?: unknown };
  const text = typeof e.message === 'string' && e.message !== '' ? e.message : String(error);
  const code = problemCode(error);
  const meaning = MEANINGS[code];
  return { code, message: meaning ? `${meaning}: ${text}` : text };
}

/**
 * Postgres's SQLSTATE or the socket's errno when there is one, else a Sluice code for the
 * failures node-postgres reports with a message only, else `UNKNOWN`.
 */
export function problemCode(error: unknown): string {
  const e = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof e.code === 'string' && e.code !== '') return e.code;
  const text = typeof e.message === 'string' ? e.message : '';
  if (/timeout exceeded when trying to connect/i.test(text)) return 'POOL_TIMEOUT';
  if (/timeout expired|connection timeout/i.test(text)) return 'CONNECT_TIMEOUT';
  if (
    /Connection terminated|connection ended|Client has encountered a connection error/i.test(text)
  )
    return 'CONNECTION_LOST';
  return 'UNKNOWN';
}
