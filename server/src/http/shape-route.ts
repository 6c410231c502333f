import { PARAMS, PATHS } from '@sluice/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { requestInvalid, subsetInvalid } from '../errors/sluice-error.js';
import type { Shape } from '../shapes/shape.js';
import { answerShapeRequest } from './answer-shape-request.js';
import { NO_STORE_HEADERS } from './cache-policy.js';
import type { RequestMetrics } from './request-metrics.js';
import type { ShapeAdmission } from './shape-admission.js';
import { SecretCheck } from './secret-check.js';
import { sendShapeAnswer } from './send-shape-answer.js';
import { sendSseStream } from './send-sse-stream.js';
import { isDegraded, type ShapeAnswerContext } from './shape-answer-context.js';
import { shapeRequestKind } from './shape-request-kind.js';
import { answerSseRequest } from './sse-answer.js';
import { isSseStream } from './sse-stream.js';
import { isValidationErrors, parseShapeRequest, type ValidationErrors } from './shape-request.js';
import { subsetAnswer } from './subset-answer.js';
import {
  isSubsetQuery,
  parseSubsetBody,
  parseSubsetQuery,
  type SubsetParse,
} from './subset-request.js';

/** Who may use the shape route, and how much of it at once. */
export interface ShapeRouteAccess {
  /** When set, every request must carry it (`SecretCheck`). */
  secret: string | undefined;
  enableDelete: boolean;
  /** The gates shape requests count against, shared with `LongPollPark`. */
  admission: ShapeAdmission;
  /** Largest `POST /v1/shape` body (a subset), in bytes: beyond it, a 413. */
  subsetMaxBodyBytes: number;
}

type Query = Record<string, string | string[] | undefined>;

/**
 * `GET`, `POST` (subset snapshots) and `DELETE /v1/shape` over HTTP; the answers themselves are
 * `answerShapeRequest`'s (`subsetAnswer`'s for subsets).
 */
export function registerShapeRoute(
  app: FastifyInstance,
  context: ShapeAnswerContext,
  access: ShapeRouteAccess,
  metrics: RequestMetrics,
): void {
  const { admission } = access;
  const secret = access.secret === undefined ? undefined : new SecretCheck(access.secret);
  const authorised = (request: FastifyRequest, reply: FastifyReply): boolean =>
    secret === undefined || secret.authorise(request, reply);

  /**
   * A subset snapshot (docs/protocol.md §3.10): one query each, so every one counts against the
   * initial-request gate, replication up or down.
   */
  const answerSubset = async (
    request: FastifyRequest,
    reply: FastifyReply,
    query: Query,
    subsetParse: SubsetParse,
  ) => {
    const parsed = parseShapeRequest(query);
    const shapeErrors: ValidationErrors = isValidationErrors(parsed) ? parsed : {};
    if (!isValidationErrors(parsed) && parsed.live) {
      shapeErrors[PARAMS.live] = ['is not allowed with a subset snapshot'];
    }
    if ('errors' in subsetParse) throw subsetInvalid(subsetParse.errors, shapeErrors);
    if (isValidationErrors(parsed) || Object.keys(shapeErrors).length > 0) {
      throw requestInvalid(shapeErrors);
    }
    metrics.setKind(request, 'subset');
    const leave = admission.enter(request, { initial: true, live: false });
    try {
      const answer = await subsetAnswer(parsed, subsetParse.subset, context);
      if (answer.status === 409) metrics.setKind(request, shapeRequestKind(parsed, answer));
      return sendShapeAnswer(reply, answer);
    } finally {
      leave();
    }
  };

  app.post<{ Querystring: Query; Body: unknown }>(
    PATHS.shape,
    {
      bodyLimit: access.subsetMaxBodyBytes,
      // Before the body is read: a client without the secret cannot make the server read one.
      onRequest: async (request, reply) => {
        if (!authorised(request, reply)) return reply;
      },
    },
    async (request, reply) =>
      answerSubset(request, reply, request.query, parseSubsetBody(request.body)),
  );

  app.get<{ Querystring: Query }>(PATHS.shape, async (request, reply) => {
    if (!authorised(request, reply)) return reply;
    if (isSubsetQuery(request.query)) {
      return answerSubset(request, reply, request.query, parseSubsetQuery(request.query));
    }
    const parsed = parseShapeRequest(request.query);
    if (isValidationErrors(parsed)) throw requestInvalid(parsed);
    metrics.setKind(request, shapeRequestKind(parsed));
    const initial = parsed.offset === 'before-all' && !isDegraded(context.status);
    const leave = admission.enter(request, { initial, live: parsed.live });
    const release = parsed.live ? metrics.holdLongPoll(reply.raw) : undefined;
    let left = false;
    const done = () => {
      if (left) return;
      left = true;
      release?.();
      leave();
    };
    // An SSE stream stays admitted and held until its response closes, not just until it opens.
    let streaming = false;
    try {
      const answer = await (parsed.sse ? answerSseRequest : answerShapeRequest)(parsed, context);
      metrics.setKind(request, shapeRequestKind(parsed, answer));
      if (isSseStream(answer)) {
        streaming = true;
        return sendSseStream(reply, answer, done);
      }
      return sendShapeAnswer(reply, answer);
    } finally {
      if (!streaming) done();
    }
  });

  app.delete<{ Querystring: Query }>(PATHS.shape, async (request, reply) => {
    if (!authorised(request, reply)) return reply;
    metrics.setKind(request, 'delete');
    void reply.headers(NO_STORE_HEADERS);
    if (!access.enableDelete) {
      return reply
        .code(405)
        .send({ message: 'Deleting shapes is disabled (SLUICE_ENABLE_SHAPE_DELETE)' });
    }
    const handle = typeof request.query.handle === 'string' ? request.query.handle : undefined;
    let shape: Shape | undefined;
    if (handle !== undefined && request.query.table === undefined) {
      shape = context.registry.get(handle);
    } else {
      const parsed = parseShapeRequest({ offset: '-1', ...request.query, handle: undefined });
      if (isValidationErrors(parsed)) throw requestInvalid(parsed);
      shape = context.registry.find(parsed.definition);
      if (shape && handle !== undefined && shape.handle !== handle) shape = undefined;
    }
    if (!shape) return reply.code(404).send({ message: 'No such shape' });
    await context.registry.deleteWhenCreated(shape);
    return reply.code(202).send();
  });
}
