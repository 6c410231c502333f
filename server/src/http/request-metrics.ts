import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
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
      const start = process.hrtime.bigint();
      // `on`, not `once`: a response closes once, and `once` would add a wrapper and its state to
      // every request (a held long-poll keeps them for as long as it is held).
      reply.raw.on('close', () => {
        const seconds = Number(process.hrtime.bigint() - start) / 1e9;
        const labels = {
          route: request.routeOptions.url ?? UNMATCHED_ROUTE,
          method: METHODS.has(request.method) ? request.method : 'OTHER',
          status: String(reply.raw.writableFinished ? reply.raw.statusCode : CLIENT_CLOSED),
          kind: this.#kinds.get(request) ?? 'other',
        };
        this.#metrics.httpRequests.inc(labels);
        this.#metrics.httpDuration.observe(labels, seconds);
      });
      done();
    });
  }

  setKind(request: FastifyRequest, kind: RequestKind): void {
    this.#kinds.set(request, kind);
  }

  /**
   * Counts a live request as held until it is answered or its client goes away, whichever comes
   * first (a timeout, a wake-up and shutdown all answer it); returns the way out, which the
   * route calls once its answer is decided.
   */
  holdLongPoll(reply: FastifyReply): () => void {
    const gauge = this.#metrics.longPollsHeld;
    gauge.inc();
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      gauge.dec();
      reply.raw.removeListener('close', release);
    };
    reply.raw.on('close', release);
    return release;
  }
}
