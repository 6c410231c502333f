import type { IncomingMessage, ServerResponse } from 'node:http';
import { HEADERS, PARAMS, PATHS, compareLogOffsets, type LogOffset } from '@sluice/protocol';
import type { FastifyBaseLogger } from 'fastify';
import type { Shape } from '../shapes/shape.js';
import type { RequestKind } from '../status/sluice-metrics.js';
import { errorAnswer } from './error-answer.js';
import { answerAfterWait, type LogRead, type Wait } from './log-answer.js';
import { parseQueryString } from './query-string.js';
import type { RequestMetrics } from './request-metrics.js';
import { ResponseReplay } from './response-replay.js';
import type { SecretCheck } from './secret-check.js';
import { isNotModified, writeAnswer } from './send-shape-answer.js';
import type { ShapeAdmission } from './shape-admission.js';
import type { ShapeAnswer } from './shape-answer.js';
import { isDegraded, type ShapeAnswerContext } from './shape-answer-context.js';
import { shapeRequestKind } from './shape-request-kind.js';
import { isValidationErrors, parseShapeRequest } from './shape-request.js';
import { isSubsetQuery } from './subset-request.js';

/** What the park needs besides the requests. */
export interface LongPollParkOptions {
  context: ShapeAnswerContext;
  admission: ShapeAdmission;
  metrics: RequestMetrics;
  /** When set, a request without it is left to the route (which answers 401). */
  secret: SecretCheck | undefined;
  /** Headers every response carries besides the answer's (CORS), as name, value, name, … */
  baseHeaders: readonly string[];
  log: FastifyBaseLogger;
  /** Database trouble while answering: have it probed at once (`errorAnswer`). */
  onUnreachable: () => void;
}

/** What is kept of a held request: what its answer needs. */
type HeldRequest = LogRead<LogOffset>;

/** A held long-poll: all that is kept of it until it is answered or its client goes away. */
interface Parked {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly parsed: HeldRequest;
  /** Its group among the shape's parked requests (`ShapeWaiters.byAnswer`). */
  readonly answerKey: string;
  /** `Date.now()` when it times out. */
  readonly deadline: number;
  /** `performance.now()` when it arrived (`sluice_http_request_duration_seconds`). */
  readonly start: number;
  kind: RequestKind;
  /** Leaves the admission gates; unset once left (and no longer counted as held). */
  leave: (() => void) | undefined;
}

/** The long-polls held on one shape. */
interface ShapeWaiters {
  /**
   * By the `offset` and `cursor` they sent, which is all their answer depends on: a flush
   * answers a whole group with one answer, written to each in one pass.
   */
  readonly byAnswer: Map<string, Set<Parked>>;
  /** In order of arrival, which is the order of their deadlines (one timeout for all). */
  readonly byDeadline: Set<Parked>;
}

/**
 * Live long-polls that must wait, taken before Fastify routes them (docs/architecture.md, "HTTP",
 * held long-polls). A request that would be held (valid, authorised, admitted, for a ready shape
 * with nothing after its offset) is parked as a small record on its shape; every other request,
 * including each this one cannot decide at once, goes on to the route. Held there, a request
 * would keep Fastify's request, reply and logger, the route's suspended async frames and promises
 * and a timer of its own for as long as it waits (about 4 kB, docs/performance.md measure 7). A
 * shape's parked requests are woken together by one wait on the shape (the route's
 * `waitForEntries` decides the same things for one request), and answered as the route would:
 * by `answerAfterWait`, built once for every request owed the same answer, or by `errorAnswer`.
 */
export class LongPollPark {
  readonly #options: LongPollParkOptions;
  readonly #shapes = new Map<Shape, ShapeWaiters>();

  constructor(options: LongPollParkOptions) {
    this.#options = options;
  }

  /** Parks the request and returns true, or returns false and leaves it untouched. */
  take(req: IncomingMessage, res: ServerResponse): boolean {
    const held = this.#heldRequest(req);
    if (held === undefined) return false;
    const { parsed, shape } = held;
    const origin = { headers: req.headers, ip: req.socket.remoteAddress ?? '' };
    const leave = this.#options.admission.tryEnter(origin, { initial: false, live: true });
    // A full gate: the route refuses the request with the right error.
    if (leave === undefined) return false;
    this.#options.metrics.countHeld(1);
    const parked: Parked = {
      req,
      res,
      parsed,
      answerKey: `${parsed.offsetText} ${parsed.cursor ?? ''}`,
      deadline: Date.now() + this.#options.context.longPoll.timeoutMs,
      start: performance.now(),
      kind: 'live',
      leave,
    };
    let waiters = this.#shapes.get(shape);
    const watched = waiters !== undefined;
    if (waiters === undefined) {
      waiters = { byAnswer: new Map(), byDeadline: new Set() };
      this.#shapes.set(shape, waiters);
    }
    let group = waiters.byAnswer.get(parked.answerKey);
    if (group === undefined) waiters.byAnswer.set(parked.answerKey, (group = new Set()));
    group.add(parked);
    waiters.byDeadline.add(parked);
    if (!watched) void this.#watch(shape, waiters);
    res.on('close', () => {
      // The client went away while it was held.
      if (this.#unpark(waiters, parked)) this.#leave(parked);
      this.#options.metrics.count(res, parked.start, PATHS.shape, 'GET', parked.kind);
    });
    return true;
  }

  /**
   * The request and its shape when the route would hold it now; undefined for anything else,
   * decided from what is known at once (no database, storage or replication wait).
   */
  #heldRequest(req: IncomingMessage): { parsed: HeldRequest; shape: Shape } | undefined {
    const url = req.url;
    if (req.method !== 'GET' || url === undefined || !url.startsWith(PATHS.shape)) return;
    // The path alone, then its query: `/v1/shapes?…` is not the shape route.
    if (url.charCodeAt(PATHS.shape.length) !== 0x3f /* ? */) return;
    // Initial and catch-up reads are not parsed twice: no `live` anywhere, no live request (one
    // that spells it percent-encoded is left to the route, which holds it as before).
    if (!url.includes(PARAMS.live)) return;
    const query = parseQueryString(url.slice(PATHS.shape.length + 1));
    const { secret, context } = this.#options;
    if (secret && !secret.carries(query[PARAMS.secret], req.headers[HEADERS.authorization])) return;
    if (isSubsetQuery(query)) return;
    const parsed = parseShapeRequest(query);
    if (isValidationErrors(parsed) || !parsed.live || parsed.sse) return;
    const { offset, handle, offsetText, cursor } = parsed;
    if (typeof offset !== 'object' || handle === undefined) return;
    const { registry } = context;
    if (context.longPoll.closing.aborted || isDegraded(context.status)) return;
    if (!context.replication.continuityKnown() || registry.loading) return;
    const shape = registry.find(parsed.definition);
    if (shape?.handle !== handle || !shape.ready || registry.creating(shape)) return;
    if (shape.deleted || shape.hasEntriesAfter(offset)) return;
    // Past the log's end: the route gives it a moment to land before refusing it.
    if (compareLogOffsets(offset, shape.endOffset) > 0) return;
    return { parsed: { offset, offsetText, live: true, cursor }, shape };
  }

  /**
   * One wait on the shape for all its parked requests, until none is left. Each wake answers the
   * groups whose offset the log has passed, and the requests whose time is up; deletion and
   * shutdown answer them all.
   */
  async #watch(shape: Shape, waiters: ShapeWaiters): Promise<void> {
    const { byAnswer, byDeadline } = waiters;
    try {
      for (;;) {
        const first = byDeadline.values().next();
        if (first.done) break;
        await shape.waitForChange(first.value.deadline - Date.now());
        const closing = this.#options.context.longPoll.closing.aborted;
        if (shape.deleted || closing) {
          // One answer for all: the same refetch, or the same refusal.
          this.#wake(shape, waiters, [...byDeadline], shape.deleted ? 'deleted' : 'closing');
          continue;
        }
        for (const group of byAnswer.values()) {
          const { offset } = group.values().next().value!.parsed;
          if (shape.hasEntriesAfter(offset)) this.#wake(shape, waiters, [...group], 'ready');
        }
        // Each its own answer: a timed-out answer has an etag of its own.
        const now = Date.now();
        for (const parked of byDeadline) {
          if (parked.deadline > now) break;
          this.#wake(shape, waiters, [parked], 'timed-out');
        }
      }
    } finally {
      this.#shapes.delete(shape);
    }
  }

  /** Takes `woken` off the shape and answers them alike, once their wait ended as `wait`. */
  #wake(shape: Shape, waiters: ShapeWaiters, woken: Parked[], wait: Wait): void {
    // Requests can leave during the wait (their clients went away): none may be left.
    if (woken.length === 0) return;
    for (const parked of woken) this.#unpark(waiters, parked);
    this.#answer(shape, woken, wait).catch((error: unknown) => {
      this.#options.log.error({ err: error }, 'answering held long-polls failed');
      for (const parked of woken) {
        this.#leave(parked);
        parked.res.destroy();
      }
    });
  }

  /** Takes a request off its shape; false if it was not there (already answered). */
  #unpark(waiters: ShapeWaiters, parked: Parked): boolean {
    if (!waiters.byDeadline.delete(parked)) return false;
    const group = waiters.byAnswer.get(parked.answerKey);
    group?.delete(parked);
    if (group?.size === 0) waiters.byAnswer.delete(parked.answerKey);
    return true;
  }

  /**
   * Answers woken requests that are owed the same answer (same offset and cursor, or the same
   * refetch or refusal) as the route would have: built once, then written to each.
   */
  async #answer(shape: Shape, woken: Parked[], wait: Wait): Promise<void> {
    const { context, log, onUnreachable } = this.#options;
    const { parsed } = woken[0]!;
    let status: number;
    let headers: Record<string, string>;
    let body: Buffer | string;
    let kind: RequestKind = 'live';
    try {
      const answer = await answerAfterWait(shape, parsed, context, wait);
      kind = shapeRequestKind({ ...parsed, sse: false }, answer);
      ({ status, headers } = answer);
      body = bodyOf(answer);
    } catch (error) {
      const answer = errorAnswer(error as Error, log, onUnreachable);
      ({ status, headers } = answer);
      body = JSON.stringify(answer.body);
    } finally {
      // A held long-poll reads the shape until it ends: the idle time counts from then.
      shape.markRead();
    }
    const { baseHeaders } = this.#options;
    const answer = new ResponseReplay(status, baseHeaders, headers, body);
    for (const parked of woken) {
      parked.kind = kind;
      this.#leave(parked);
      const notModified = isNotModified(headers, parked.req.headers);
      this.#send(parked, (res) =>
        notModified ? writeAnswer(res, 304, baseHeaders, headers, undefined) : answer.send(res),
      );
    }
  }

  /** Writes one answer, unless its client has gone; logged as Fastify logs the requests it routes. */
  #send(parked: Parked, write: (res: ServerResponse) => void): void {
    const { req, res, start } = parked;
    const { log } = this.#options;
    if (res.destroyed) return;
    try {
      write(res);
    } catch (error) {
      log.error({ err: error }, 'answering a held long-poll failed');
      res.destroy();
      return;
    }
    // A no-op above `info`.
    log.info(
      { req: loggedRequest(req), res, responseTime: performance.now() - start },
      'request completed',
    );
  }

  #leave(parked: Parked): void {
    if (parked.leave === undefined) return;
    parked.leave();
    parked.leave = undefined;
    this.#options.metrics.countHeld(-1);
  }
}

/** A held answer's body is one Buffer (a log read) or a string (a refetch). */
function bodyOf(answer: ShapeAnswer): Buffer | string {
  const { body } = answer;
  return typeof body === 'string' || Buffer.isBuffer(body) ? body : Buffer.concat([...body]);
}

/** What the request log serializer reads of a request (`LOG_SERIALIZERS`). */
function loggedRequest(req: IncomingMessage) {
  return {
    method: req.method ?? '',
    url: req.url ?? '',
    host: req.headers.host ?? '',
    ip: req.socket.remoteAddress ?? '',
    socket: req.socket,
  };
}
