import type { ShapeRequest } from './shape-request.js';

/**
 * What to answer a `GET /v1/shape` while replication is down (docs/protocol.md §7):
 * - `serve-log`: the held shape's log, read-only;
 * - `fallback-rows`: the shape's rows queried from Postgres, under a new fallback handle;
 * - `fallback-handle`: the request names a fallback handle, which has no log (see
 *   `chooseFallbackHandleAnswer`);
 * - `nothing-new`: up-to-date at the offset asked for, under a new fallback handle;
 * - `refetch-fallback`: 409, start again from a new fallback handle;
 * - `not-ready`: 503, nothing can be answered until replication tells whether stored logs are
 *   current.
 */
export type DegradedChoice =
  | 'serve-log'
  | 'fallback-rows'
  | 'fallback-handle'
  | 'nothing-new'
  | 'refetch-fallback'
  | 'not-ready';

/** What is known, when the request comes, besides the request itself. */
export interface DegradedFacts {
  /** The request's handle was made for a fallback result. */
  fallbackHandle: boolean;
  /** The shape the registry holds for the request's definition, if any. */
  held: { handle: string; ready: boolean } | undefined;
  /** Stored logs are known to continue the replication slot. */
  continuityChecked: boolean;
  /** The database is down too (state `unavailable`), not only replication. */
  databaseDown: boolean;
  /** The shape storage does not answer (Redis down): no log can be read. Absent: it answers. */
  storageDown?: boolean;
}

export function chooseDegradedAnswer(
  request: Pick<ShapeRequest, 'offset' | 'handle'>,
  facts: DegradedFacts,
): DegradedChoice {
  const { held } = facts;
  const named = held?.ready === true && request.handle === held.handle;
  if (request.offset === 'before-all') {
    // Naming the shape's own handle (where a 409 sends a client) reads that shape; anything
    // else gets fresh fallback rows.
    return named ? fromStoredLog(request, facts) : 'fallback-rows';
  }
  if (facts.fallbackHandle) return 'fallback-handle';
  if (named || (request.handle === undefined && held?.ready === true)) {
    return fromStoredLog(request, facts);
  }
  if (request.offset === 'now') return 'nothing-new';
  // An unknown handle: start again, from fallback rows.
  return 'refetch-fallback';
}

/**
 * A stored log is served only when it is known to continue the slot, and can be read. Logs from
 * before a restart continue the stream only if the slot survived, which nobody has been able to
 * check yet: serving them could pass off another database's rows. A storage that does not answer
 * cannot serve them at all. With the database answering, the client is given fresh rows instead
 * (fallback rows).
 */
function fromStoredLog(
  request: Pick<ShapeRequest, 'offset'>,
  facts: DegradedFacts,
): DegradedChoice {
  if (facts.continuityChecked && facts.storageDown !== true) return 'serve-log';
  if (facts.databaseDown) return 'not-ready';
  return request.offset === 'before-all' ? 'fallback-rows' : 'refetch-fallback';
}

/**
 * What to answer a request naming a fallback handle:
 * - `nothing-new`: up-to-date under that handle (replication is still down);
 * - `refetch-live`: 409 to the live shape, replication being back;
 * - `shutting-down`: 503, the server closed while the request was held.
 */
export type FallbackHandleChoice = 'nothing-new' | 'refetch-live' | 'shutting-down';

/** What is known once a live request has been held (a non-live one is not held). */
export interface FallbackHandleFacts {
  /** A live request was held for the whole long-poll, or until the server closed. */
  heldInVain: boolean;
  /** The server is closing. */
  closing: boolean;
  /** Replication is down (fallback or unavailable). */
  degraded: boolean;
}

/**
 * A fallback handle has no log: live requests are held for the long-poll timeout, and once
 * replication is back the client is sent to the live shape.
 */
export function chooseFallbackHandleAnswer(facts: FallbackHandleFacts): FallbackHandleChoice {
  if (facts.heldInVain) return facts.closing ? 'shutting-down' : 'nothing-new';
  return facts.degraded ? 'nothing-new' : 'refetch-live';
}
