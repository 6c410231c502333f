import {
  HEADERS,
  PATHS,
  compareLogOffsets,
  formatLogOffset,
  type LogOffset,
} from '@sluice/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ShapeCreationError, type ShapeRegistry } from '../shapes/shape-registry.js';
import type { Shape } from '../shapes/shape.js';
import { AdmissionGate } from './admission-gate.js';
import { setCacheControl, type CacheAges } from './cache-policy.js';
import { nextLiveCursor } from './live-cursor.js';
import {
  isValidationErrors,
  parseShapeRequest,
  type ShapeRequest,
  type ValidationErrors,
} from './shape-request.js';

export interface ShapeRouteOptions extends CacheAges {
  registry: ShapeRegistry;
  /** Decimal LSN of the last replication position every shape has durably seen. */
  lastSeenLsn(): bigint;
  /** False until replication has told whether stored shape logs continue the stream. */
  continuityChecked(timeoutMs: number): Promise<boolean>;
  longPollTimeoutMs: number;
  /** Aborted when the server closes; held long-polls are then woken (DESIGN.md invariant 7). */
  closing: AbortSignal;
  secret: string | undefined;
  enableDelete: boolean;
  maxConcurrentInitial: number;
  maxConcurrentLive: number;
}

type Query = Record<string, string | string[] | undefined>;

/** How long a request waits at start for replication to tell whether stored logs are current. */
const CONTINUITY_WAIT_MS = 5_000;

/** How long a request for an offset past the log's end waits before it is a 400. */
const OUT_OF_BOUNDS_GRACE_MS = 1_000;

export function registerShapeRoute(app: FastifyInstance, options: ShapeRouteOptions): void {
  const badRequest = (reply: FastifyReply, errors: ValidationErrors) => {
    setCacheControl(reply, 'error', options);
    return reply.code(400).send({ message: 'Invalid request', errors });
  };

  const authorised = (
    request: FastifyRequest<{ Querystring: Query }>,
    reply: FastifyReply,
  ): boolean => {
    if (options.secret === undefined || request.query.secret === options.secret) return true;
    setCacheControl(reply, 'error', options);
    void reply
      .code(401)
      .send({ message: 'Unauthorized: the secret parameter is missing or wrong' });
    return false;
  };

  const initialGate = new AdmissionGate(options.maxConcurrentInitial);
  const liveGate = new AdmissionGate(options.maxConcurrentLive);

  app.get<{ Querystring: Query }>(PATHS.shape, async (request, reply) => {
    if (!authorised(request, reply)) return reply;
    const parsed = parseShapeRequest(request.query);
    if (isValidationErrors(parsed)) return badRequest(reply, parsed);
    const gate = parsed.offset === 'before-all' ? initialGate : parsed.live ? liveGate : undefined;
    if (gate && !gate.tryEnter()) {
      const kind = gate === initialGate ? 'initial' : 'live';
      const message = `Too many concurrent ${kind} requests (limit ${gate.limit}); retry shortly`;
      return unavailable(reply, options, 'SLUICE_ERR_OVERLOADED', message);
    }
    try {
      if (!(await options.continuityChecked(CONTINUITY_WAIT_MS))) {
        const message =
          'Replication has not been checked yet, so stored shapes may be stale; retry shortly';
        return unavailable(reply, options, 'SLUICE_ERR_NOT_READY', message);
      }
      return await handle(request, reply, parsed);
    } finally {
      gate?.leave();
    }
  });

  const handle = async (
    request: FastifyRequest<{ Querystring: Query }>,
    reply: FastifyReply,
    parsed: ShapeRequest,
  ): Promise<FastifyReply> => {
    let shape: Shape;
    try {
      const existing = options.registry.find(parsed.definition);
      if (parsed.handle !== undefined && existing?.handle !== parsed.handle) {
        // The handle names data this server no longer has (deleted, rotated, unknown): the client
        // must start again, from the shape's current handle.
        const current = await options.registry.getOrCreate(parsed.definition);
        return mustRefetch(reply, current.handle, options);
      }
      const fresh =
        existing?.ready &&
        (parsed.offset !== 'before-all' || (await options.registry.stillCurrent(existing)));
      shape = fresh ? existing : await options.registry.getOrCreate(parsed.definition);
    } catch (error) {
      if (error instanceof ShapeCreationError)
        return badRequest(reply, { [error.field]: [error.message] });
      throw error;
    }
    return serve(request, reply, shape, parsed, options);
  };

  app.delete<{ Querystring: Query }>(PATHS.shape, async (request, reply) => {
    if (!authorised(request, reply)) return reply;
    setCacheControl(reply, 'error', options);
    if (!options.enableDelete) {
      return reply
        .code(405)
        .send({ message: 'Deleting shapes is disabled (SLUICE_ENABLE_SHAPE_DELETE)' });
    }
    const handle = typeof request.query.handle === 'string' ? request.query.handle : undefined;
    let shape: Shape | undefined;
    if (handle !== undefined && request.query.table === undefined) {
      shape = options.registry.get(handle);
    } else {
      const parsed = parseShapeRequest({ offset: '-1', ...request.query, handle: undefined });
      if (isValidationErrors(parsed)) return badRequest(reply, parsed);
      shape = options.registry.find(parsed.definition);
      if (shape && handle !== undefined && shape.handle !== handle) shape = undefined;
    }
    if (!shape) return reply.code(404).send({ message: 'No such shape' });
    await options.registry.delete(shape);
    return reply.code(202).send();
  });
}

function mustRefetch(reply: FastifyReply, handle: string, ages: CacheAges): FastifyReply {
  setCacheControl(reply, 'must-refetch', ages);
  return reply
    .code(409)
    .header(HEADERS.handle, handle)
    .type('application/json')
    .send('[{"headers":{"control":"must-refetch"}}]');
}

/** 503 with `retry-after`: the client backs off and comes back (PROTOCOL.md §5). */
function unavailable(
  reply: FastifyReply,
  ages: CacheAges,
  code: string,
  message: string,
): FastifyReply {
  setCacheControl(reply, 'error', ages);
  return reply.code(503).header(HEADERS.retryAfter, '1').send({ code, message });
}

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

async function serve(
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
      if (wait === 'deleted') {
        const current = await options.registry.getOrCreate(shape.metadata.definition);
        return mustRefetch(reply, current.handle, options);
      }
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
  if (live) {
    reply.header(HEADERS.cursor, nextLiveCursor(options.longPollTimeoutMs, parsed.cursor));
    setCacheControl(reply, 'live', options);
  } else {
    reply.header(HEADERS.schema, shape.metadata.schemaHeader);
    setCacheControl(reply, isInitial ? 'initial' : offset === 'now' ? 'live' : 'catch-up', options);
  }
  // A long-poll that timed out answers the same offsets as the last one: a unique tag keeps
  // caches from treating the two as the same response.
  const unique = timedOut
    ? `:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
    : '';
  const etag = `"${shape.handle}:${parsed.offsetText}:${offsetText}${unique}"`;
  reply.header(HEADERS.etag, etag);
  if (request.headers[HEADERS.ifNoneMatch] === etag) return reply.code(304).send();
  return reply
    .code(200)
    .type('application/json')
    .send(`[${body.join(',')}]`);
}
