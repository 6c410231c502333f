/** A replication error with the Postgres SQLSTATE when there is one. */
export class ReplicationError extends Error {
  override readonly name = 'ReplicationError';
  constructor(
    message: string,
    readonly code: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Whatever ended a stream, as a ReplicationError keeping the original as its cause. */
export function toReplicationError(error: unknown): ReplicationError {
  if (error instanceof ReplicationError) return error;
  const e = error as { message?: string; code?: string };
  const code = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
  return new ReplicationError(e.message ?? String(error), code ?? e.code, { cause: error });
}
