import { HEADERS, compareLogOffsets, formatLogOffset, type LogOffset } from '@sluice/protocol';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { newFallbackHandle } from '../shapes/fallback-queries.js';
import type { Shape } from '../shapes/shape.js';
import { setCacheControl } from './cache-policy.js';
import { nextLiveCursor } from './live-cursor.js';
import { mustRefetch, unavailable } from './shape-replies.js';
import type { ShapeRequest } from './shape-request.js';
import type { ShapeRouteOptions } from './shape-route.js';
import { SluiceError } from '../errors/sluice-error.js';

/** How long a request for an offset past the log's end waits before it is a 400. */
const OUT_OF_BOUNDS_GRACE_MS = 1_000;

type Wait = 'ready' | 'timed-out' | 'out-of-bounds' | 'deleted' | 'closing';

/**
 * Before reading at `offset`: an offset past the end of the log gets a moment for a flush to
 * land, then is out of bounds; a live request with nothing new is held until a flush wakes it,
 * the long-poll ends, the shape goes away or the server closes.
 */
async function waitForEntries(
  shape: Shape,
  offset: LogOffset,
  live: boolean,
  options: ShapeRouteOptions,
): Promise<Wait> {
  if (shape.hasEntriesAfter(offset)) return 'ready';
  const end = shape.log.durableOffset;
  if (end && compareLogOffsets(offset, end) > 0) {
    await shape.waitForChange(OUT_OF_BOUNDS_GRACE_MS);
    const after = shape.log.durableOffset;
    return after && compareLogOffsets(offset, after) <= 0 ? 'ready' : 'out-of-bounds';
  }
  if (!live) return 'ready';
  if (options.closing.aborted) return 'closing';
  await shape.waitForChange(options.longPollTimeoutMs);
  if (shape.deleted) return 'deleted';
  if (options.closing.aborted) return 'closing';
  return shape.hasEntriesAfter(offset) ? 'ready' : 'timed-out';
}

/**
 * Answers from a shape's log (PROTOCOL.md §3–5). While replication is down the log is served
 * read-only: the same data, marked with `electric-fallback-mode` and a short cache lifetime.
 */
export async function serveFromLog(
  request: FastifyRequest,
  reply: FastifyReply,
  shape: Shape,
  parsed: ShapeRequest,
  options: ShapeRouteOptions,
): Promise<FastifyReply> {
  const { offset, live } = parsed;
  let body: string[] = [];
  let responseOffset: LogOffset = shape.log.durableOffset ?? { tx: 0n, op: 0 };
  let reachedEnd = true;
  let timedOut = false;

  if (offset !== 'now') {
    if (offset !== 'before-all') {
      const wait = await waitForEntries(shape, offset, live, options);
      if (wait === 'out-of-bounds') {
        setCacheControl(reply, 'error', options);
        return reply
          .code(400)
          .send({ message: 'Invalid request', errors: { offset: ['out of bounds'] } });
      }
      if (wait === 'deleted') return refetchDeleted(reply, shape, options);
      if (wait === 'closing') {
        return unavailable(
          reply,
          options,
          'SLUICE_ERR_SHUTTING_DOWN',
          'The server is shutting down',
        );
      }
      timedOut = wait === 'timed-out';
    }
    const read = await shape.log.read(offset);
    body = read.entries;
    responseOffset = read.lastOffset ?? (offset === 'before-all' ? { tx: 0n, op: 0 } : offset);
    reachedEnd = read.reachedEnd;
  }

  const isInitial = offset === 'before-all';
  // The first chunk never says up-to-date: the client must come back for the rest (§3).
  const sendUpToDate = reachedEnd && !isInitial;
  if (sendUpToDate) {
    const lsn = options.lastSeenLsn().toString();
    body.push(JSON.stringify({ headers: { control: 'up-to-date', global_last_seen_lsn: lsn } }));
  }

  const offsetText = formatLogOffset(responseOffset);
  reply.header(HEADERS.handle, shape.handle).header(HEADERS.offset, offsetText);
  if (sendUpToDate) reply.header(HEADERS.upToDate, '');
  if (live) reply.header(HEADERS.cursor, nextLiveCursor(options.longPollTimeoutMs, parsed.cursor));
  else reply.header(HEADERS.schema, shape.metadata.schemaHeader);
  // Decided when answering: a request held through the end of an outage is a live answer.
  if (options.degraded()) {
    reply.header(HEADERS.fallbackMode, 'true');
    setCacheControl(reply, 'fallback', options);
  } else {
    const kind = live || offset === 'now' ? 'live' : isInitial ? 'initial' : 'catch-up';
    setCacheControl(reply, kind, options);
  }
  // A long-poll that timed out answers the same offsets as the last one: a unique tag keeps
  // caches from treating the two as the same response.
  const unique = timedOut
    ? `:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
    : '';
  // A fallback answer must not be revalidated into a live one by a cache, or the reverse.
  const mode = options.degraded() ? ':fallback' : '';
  const etag = `"${shape.handle}:${parsed.offsetText}:${offsetText}${unique}${mode}"`;
  reply.header(HEADERS.etag, etag);
  if (request.headers[HEADERS.ifNoneMatch] === etag) return reply.code(304).send();
  return reply
    .code(200)
    .type('application/json')
    .send(`[${body.join(',')}]`);
}

/**
 * The shape went away while the request waited (rotated, dropped, deleted): start again, from
 * the shape made anew. Also while replication is down: a slot found lost rotates every shape just
 * before streaming resumes, and a fallback handle would cost those clients a second refetch.
 */
async function refetchDeleted(
  reply: FastifyReply,
  shape: Shape,
  options: ShapeRouteOptions,
): Promise<FastifyReply> {
  const { definition } = shape.metadata;
  try {
    const current = await options.registry.getOrCreate(definition);
    return mustRefetch(reply, current.handle, options);
  } catch (error) {
    // The table itself is gone or changed: the next request will say what is wrong.
    if (!(error instanceof SluiceError && error.code === 'SLUICE_ERR_SHAPE_INVALID')) throw error;
    return mustRefetch(reply, newFallbackHandle(definition), options);
  }
}
