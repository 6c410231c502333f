import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RequestKind, SluiceMetrics } from '../status/sluice-metrics.js';

/** Methods counted by name; anything else Node's parser accepts is `OTHER`. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** A route no pattern matched (404): one series for every unknown URL. */
const UNMATCHED_ROUTE = 'unmatched';
/** The status of a request whose client closed the connection before its answer ended (nginx's). */
const CLIENT_CLOSED = 499;

/**
 * HTTP request metrics (`sluice_http_*`): every request is counted and timed once, when its
 * response closes, whether it finished or the client went away first. Routes say what kind of
 * request they answered (`setKind`); the rest are `other`.
 */
export class RequestMetrics {
  readonly #metrics: SluiceMetrics;
  readonly #kinds = new WeakMap<FastifyRequest, RequestKind>();

  constructor(metrics: SluiceMetrics) {
    this.#metrics = metrics;
  }

  /** Adds the hook; before the routes, so that every route gets it. */
  register(app: FastifyInstance): void {
    app.addHook('onRequest', (request, reply, done) => {
      const start = performance.now();
      // `on`, not `once`: a response closes once, and `once` would add a wrapper and its state to
      // every request (a held long-poll keeps them for as long as it is held).
      reply.raw.on('close', () => {
        const route = request.routeOptions.url ?? UNMATCHED_ROUTE;
        this.count(reply.raw, start, route, request.method, this.#kinds.get(request) ?? 'other');
      });
      done();
    });
  }

  setKind(request: FastifyRequest, kind: RequestKind): void {
    this.#kinds.set(request, kind);
  }

  /**
   * Counts and times a request whose response `res` has closed, since `start`
   * (`performance.now()`); for requests answered outside the routes (`LongPollPark`) too.
   */
  count(res: ServerResponse, start: number, route: string, method: string, kind: RequestKind) {
    const labels = {
      route,
      method: METHODS.has(method) ? method : 'OTHER',
      status: String(res.writableFinished ? res.statusCode : CLIENT_CLOSED),
      kind,
    };
    this.#metrics.httpRequests.inc(labels);
    this.#metrics.httpDuration.observe(labels, (performance.now() - start) / 1000);
  }

  /**
   * Counts a live request as held until it is answered or its client goes away, whichever comes
   * first (a timeout, a wake-up and shutdown all answer it); returns the way out, which the
   * caller calls once its answer is decided.
   */
  holdLongPoll(res: ServerResponse): () => void {
    this.countHeld(1);
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.countHeld(-1);
      res.removeListener('close', release);
    };
    res.on('close', release);
    return release;
  }

  /** One more or one fewer held live request (`sluice_http_long_polls_held`). */
  countHeld(change: 1 | -1): void {
    this.#metrics.longPollsHeld.inc(change);
  }
}
