/**
 * The table of Sluice error codes. `docs/errors.md` lists each one with how to fix it, and a
 * test fails when the two disagree.
 */
export const ERROR_CODES = {
  SLUICE_ERR_CONFIG_INVALID: {
    status: 500,
    summary: 'The server configuration (environment variables) is invalid.',
  },
  SLUICE_ERR_DB_UNREACHABLE: {
    status: 503,
    summary: 'The database could not be reached.',
  },
  SLUICE_ERR_DB_CIRCUIT_OPEN: {
    status: 503,
    summary:
      'The circuit breaker of the database is open after repeated connection failures; requests fail at once until a trial query succeeds.',
  },
  SLUICE_ERR_SHAPE_INVALID: {
    status: 400,
    summary:
      'The shape request names a table, column, where clause or option that cannot be served.',
  },
  SLUICE_ERR_SHAPE_INVALID_IDENTIFIER: {
    status: 400,
    summary: 'A table or column name in the request is malformed.',
  },
  SLUICE_ERR_TABLE_NOT_SERVED: {
    status: 400,
    summary:
      "The table is outside the server's table policy: a system schema, or not in SLUICE_TABLES.",
  },
  SLUICE_ERR_TABLE_NOT_READY: {
    status: 400,
    summary:
      'The table is not set up for replication and Sluice may not (SLUICE_PUBLISH=manual) or cannot (privileges) set it up; the message names the SQL to run.',
  },
  SLUICE_ERR_OVERLOADED: {
    status: 503,
    summary: 'Too many concurrent initial or live requests, or shapes being created.',
  },
  SLUICE_ERR_SHAPE_LIMIT: {
    status: 503,
    summary: 'The request would create a shape beyond the shape limits, in all or for its table.',
  },
  SLUICE_ERR_OVERLOADED_PER_CLIENT: {
    status: 503,
    summary: 'Too many concurrent live requests from one client address.',
  },
  SLUICE_ERR_FALLBACK_OVERLOADED: {
    status: 503,
    summary: 'Replication is down and too many distinct fallback queries are already running.',
  },
  SLUICE_ERR_NOT_READY: {
    status: 503,
    summary:
      'Not ready for this request yet: stored shapes still loading or replication not checked since start, or a replicated commit not yet visible to a new snapshot.',
  },
  SLUICE_ERR_SHUTTING_DOWN: {
    status: 503,
    summary: 'The server is shutting down.',
  },
  SLUICE_ERR_WS_FRAME_INVALID: {
    status: 400,
    summary:
      'A WebSocket frame is not a JSON object, has an unknown type, or a field of the wrong kind.',
  },
  SLUICE_ERR_WS_TOO_MANY_SUBSCRIPTIONS: {
    status: 400,
    summary: 'A WebSocket subscribe beyond the subscriptions one socket may hold.',
  },
  SLUICE_ERR_WS_NOT_LIVE: {
    status: 503,
    summary:
      'A WebSocket subscribe while the server is not live: subscriptions are served only while replication streams.',
  },
  SLUICE_ERR_INTERNAL: {
    status: 500,
    summary: 'An unexpected error; the server logged it with its cause.',
  },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;
