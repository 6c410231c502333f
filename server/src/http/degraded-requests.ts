import { Readable } from 'node:stream';
import { HEADERS, SNAPSHOT_END, formatLogOffset } from '@sluice/protocol';
import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  isFallbackHandle,
  newFallbackHandle,
  type FallbackResult,
} from '../shapes/fallback-queries.js';
import type { Shape } from '../shapes/shape.js';
import { setCacheControl } from './cache-policy.js';
import { nextLiveCursor } from './live-cursor.js';
import { serveFromLog } from './serve-from-log.js';
import { badRequest, mustRefetch, unavailable } from './shape-replies.js';
import type { ShapeRequest } from './shape-request.js';
import type { ShapeRouteOptions } from './shape-route.js';
import { SluiceError } from '../errors/sluice-error.js';

/** Where a fallback snapshot ends: after it, a fallback handle only ever says up-to-date. */
const FALLBACK_END = formatLogOffset(SNAPSHOT_END);

/**
 * `GET /v1/shape` while replication is down (PROTOCOL.md §7): initial requests get a fallback
 * snapshot queried from Postgres; shapes whose log is known to continue the slot are served from
 * it, read-only; fallback handles are held like live requests and told to refetch once live
 * again. With the database down too, only what the logs hold can be answered.
 */
export async function handleDegraded(
  request: FastifyRequest,
  reply: FastifyReply,
  parsed: ShapeRequest,
  options: ShapeRouteOptions,
): Promise<FastifyReply> {
  const existing = options.registry.find(parsed.definition);
  const named = existing?.ready && parsed.handle === existing.handle ? existing : undefined;
  if (parsed.offset === 'before-all') {
    // Naming the shape's own handle (where a 409 sends a client) reads that shape; anything
    // else gets a fresh fallback snapshot.
    return named
      ? serveStored(request, reply, named, parsed, options)
      : fallbackSnapshot(reply, parsed, options);
  }
  if (parsed.handle !== undefined && isFallbackHandle(parsed.handle))
    return holdFallbackHandle(reply, parsed, parsed.handle, options);
  const stored = named ?? (parsed.handle === undefined && existing?.ready ? existing : undefined);
  if (stored) return serveStored(request, reply, stored, parsed, options);
  if (parsed.offset === 'now')
    return upToDate(reply, parsed, newFallbackHandle(parsed.definition), options);
  // An unknown handle: start again, from a fallback snapshot.
  return mustRefetch(reply, newFallbackHandle(parsed.definition), options, true);
}

/** A shape's log, read-only, when it is known to continue the slot. */
async function serveStored(
  request: FastifyRequest,
  reply: FastifyReply,
  shape: Shape,
  parsed: ShapeRequest,
  options: ShapeRouteOptions,
): Promise<FastifyReply> {
  // Logs from before a restart continue the stream only if the slot survived, which nobody has
  // been able to check yet: serving them could pass off another database's rows. With the
  // database answering, the client is given fresh rows instead (a fallback snapshot).
  if (!(await options.continuityChecked(0))) {
    if (options.status.current().state === 'unavailable') {
      const message = 'Replication is down and stored shapes cannot be checked yet; retry shortly';
      return unavailable(reply, options, 'SLUICE_ERR_NOT_READY', message);
    }
    return parsed.offset === 'before-all'
      ? fallbackSnapshot(reply, parsed, options)
      : mustRefetch(reply, newFallbackHandle(parsed.definition), options, true);
  }
  return serveFromLog(request, reply, shape, parsed, options);
}

async function fallbackSnapshot(
  reply: FastifyReply,
  parsed: ShapeRequest,
  options: ShapeRouteOptions,
): Promise<FastifyReply> {
  // Even when the probe finds the database down, the query is tried: the executor's retries and
  // circuit breaker decide how long that may take (a 503 at once while the breaker is open).
  const pending = options.fallback.get(parsed.definition);
  if (!pending) {
    const message = 'Too many fallback queries are running; retry shortly';
    return unavailable(reply, options, 'SLUICE_ERR_FALLBACK_OVERLOADED', message);
  }
  let snapshot: FallbackResult;
  try {
    snapshot = await pending;
  } catch (error) {
    if (error instanceof SluiceError && error.code === 'SLUICE_ERR_SHAPE_INVALID')
      return badRequest(reply, { [error.details.field ?? 'request']: [error.message] }, options);
    throw error;
  }
  const upToDate = upToDateMessage(options);
  const etag = `"${snapshot.handle}:-1:${FALLBACK_END}"`;
  reply
    .header(HEADERS.handle, snapshot.handle)
    .header(HEADERS.offset, FALLBACK_END)
    .header(HEADERS.schema, snapshot.schemaHeader)
    .header(HEADERS.upToDate, '')
    .header(HEADERS.fallbackMode, 'true')
    .header(HEADERS.etag, etag);
  setCacheControl(reply, 'fallback', options);
  if (reply.request.headers[HEADERS.ifNoneMatch] === etag) return reply.code(304).send();
  // The rows are shared by every request of the window: streamed, never copied per request.
  const tail = `${snapshot.rows.length > 0 ? ',' : ''}${upToDate}]`;
  const body = Readable.from([Buffer.from('['), snapshot.rows, Buffer.from(tail)]);
  return reply.code(200).type('application/json').send(body);
}

/**
 * A fallback handle has no log: live requests are held for the long-poll timeout, and once
 * replication is back the client is sent to the live shape (a 409 naming its handle).
 */
async function holdFallbackHandle(
  reply: FastifyReply,
  parsed: ShapeRequest,
  handle: string,
  options: ShapeRouteOptions,
): Promise<FastifyReply> {
  if (parsed.live && !(await liveWithin(options))) {
    if (options.closing.aborted) {
      return unavailable(reply, options, 'SLUICE_ERR_SHUTTING_DOWN', 'The server is shutting down');
    }
    return upToDate(reply, parsed, handle, options);
  }
  if (options.degraded()) return upToDate(reply, parsed, handle, options);
  const live = await options.registry.getOrCreate(parsed.definition).catch((error: unknown) => {
    if (error instanceof SluiceError && error.code === 'SLUICE_ERR_SHAPE_INVALID') return error;
    throw error;
  });
  if (live instanceof SluiceError)
    return badRequest(reply, { [live.details.field ?? 'request']: [live.message] }, options);
  return mustRefetch(reply, live.handle, options);
}

/** Resolves true as soon as replication is back, false after the long-poll timeout or on close. */
function liveWithin(options: ShapeRouteOptions): Promise<boolean> {
  if (!options.degraded()) return Promise.resolve(true);
  if (options.closing.aborted) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    const finish = (live: boolean) => {
      clearTimeout(timer);
      stop();
      options.closing.removeEventListener('abort', onAbort);
      resolve(live);
    };
    const onAbort = () => finish(false);
    const timer = setTimeout(() => finish(false), options.longPollTimeoutMs);
    const stop = options.status.onChange(({ to }) => {
      if (to === 'live') finish(true);
    });
    options.closing.addEventListener('abort', onAbort);
  });
}

/** Nothing new under a handle that has no log: `up-to-date` at the offset asked for. */
async function upToDate(
  reply: FastifyReply,
  parsed: ShapeRequest,
  handle: string,
  options: ShapeRouteOptions,
): Promise<FastifyReply> {
  const offset = parsed.offset === 'now' ? FALLBACK_END : parsed.offsetText;
  // Clients require `electric-schema` on every non-live answer (the official client fails for
  // good without it): from the shape the server holds, else from a fallback snapshot (shared by
  // the window's identical requests, like any other).
  if (!parsed.live) {
    const schema = await schemaOf(parsed, options);
    if (schema === undefined) {
      const message = 'Too many fallback queries are running; retry shortly';
      return unavailable(reply, options, 'SLUICE_ERR_FALLBACK_OVERLOADED', message);
    }
    reply.header(HEADERS.schema, schema);
  }
  reply
    .header(HEADERS.handle, handle)
    .header(HEADERS.offset, offset)
    .header(HEADERS.upToDate, '')
    .header(HEADERS.fallbackMode, 'true');
  if (parsed.live)
    reply.header(HEADERS.cursor, nextLiveCursor(options.longPollTimeoutMs, parsed.cursor));
  setCacheControl(reply, 'fallback', options);
  return reply
    .code(200)
    .type('application/json')
    .send(`[${upToDateMessage(options)}]`);
}

/** The shape's `electric-schema`; undefined when a fallback query would be one too many. */
async function schemaOf(
  parsed: ShapeRequest,
  options: ShapeRouteOptions,
): Promise<string | undefined> {
  const held = options.registry.find(parsed.definition);
  if (held) return held.metadata.schemaHeader;
  const pending = options.fallback.get(parsed.definition);
  return pending ? (await pending).schemaHeader : undefined;
}

function upToDateMessage(options: ShapeRouteOptions): string {
  const lsn = options.lastSeenLsn().toString();
  return JSON.stringify({ headers: { control: 'up-to-date', global_last_seen_lsn: lsn } });
}
