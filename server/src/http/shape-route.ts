import { PATHS } from '@sluice/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FallbackQueries } from '../shapes/fallback-queries.js';
import type { ShapeRegistry } from '../shapes/shape-registry.js';
import type { Shape } from '../shapes/shape.js';
import type { StatusMonitor } from '../status/status-monitor.js';
import { AdmissionGate } from './admission-gate.js';
import { setCacheControl, type CacheAges } from './cache-policy.js';
import { handleDegraded } from './degraded-requests.js';
import { serveFromLog } from './serve-from-log.js';
import { badRequest as badRequestReply, mustRefetch, unavailable } from './shape-replies.js';
import {
  isValidationErrors,
  parseShapeRequest,
  type ShapeRequest,
  type ValidationErrors,
} from './shape-request.js';
import { SluiceError } from '../errors/sluice-error.js';

export interface ShapeRouteOptions extends CacheAges {
  registry: ShapeRegistry;
  status: StatusMonitor;
  fallback: FallbackQueries;
  /** True while replication is down (fallback or unavailable): answers are marked as such. */
  degraded(): boolean;
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

export function registerShapeRoute(app: FastifyInstance, options: ShapeRouteOptions): void {
  const badRequest = (reply: FastifyReply, errors: ValidationErrors) =>
    badRequestReply(reply, errors, options);

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
    // In fallback, initial requests are limited by distinct queries (FallbackQueries): those
    // that join a running query cost the database nothing and are not turned away.
    const initial = parsed.offset === 'before-all' && !options.degraded() ? initialGate : undefined;
    const gate = initial ?? (parsed.live ? liveGate : undefined);
    if (gate && !gate.tryEnter()) {
      const kind = gate === initialGate ? 'initial' : 'live';
      const message = `Too many concurrent ${kind} requests (limit ${gate.limit}); retry shortly`;
      return unavailable(reply, options, 'SLUICE_ERR_OVERLOADED', message);
    }
    try {
      // Replication is down: fallback answers (PROTOCOL.md §7).
      if (options.degraded()) return await handleDegraded(request, reply, parsed, options);
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
      if (error instanceof SluiceError && error.code === 'SLUICE_ERR_SHAPE_INVALID')
        return badRequest(reply, { [error.details.field ?? 'request']: [error.message] });
      throw error;
    }
    return serveFromLog(request, reply, shape, parsed, options);
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
