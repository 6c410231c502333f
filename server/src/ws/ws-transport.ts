import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  ERROR_CODES,
  HEADERS,
  PARAMS,
  PATHS,
  WS_CLOSE_CODES,
  type ErrorCode,
} from '@sluice/protocol';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { WebSocketServer } from 'ws';
import type { ShapeAnswerContext } from '../http/shape-answer-context.js';
import { SecretCheck, UNAUTHORIZED_MESSAGE } from '../http/secret-check.js';
import { answerAsRequest, refuseUpgrade } from './upgrade-answers.js';
import { WsMetrics, type WsRefusalReason } from './ws-metrics.js';
import { WsSession } from './ws-session.js';

/** The limits and rules of `/v1/ws` (docs/configuration.md, `SLUICE_WS_*`). */
export interface WsTransportOptions {
  /** When set, the upgrade must carry it, as for `/v1/shape` (`secret=` or a bearer header). */
  secret: string | undefined;
  /** Browser origins allowed to open sockets; undefined: any. */
  allowedOrigins: readonly string[] | undefined;
  maxSockets: number;
  maxSubscriptions: number;
  maxFrameBytes: number;
  maxBufferedBytes: number;
  heartbeatMs: number;
}

/** After shutdown's 1001, how long a client gets to answer the close before it is cut. */
const CLOSE_GRACE_MS = 1_000;
/** What a refused upgrade for too many sockets tells the client to wait, in seconds. */
const RETRY_AFTER_S = 1;

/**
 * The WebSocket live transport, `GET /v1/ws` (docs/protocol.md §12), on the app's HTTP server:
 * checks each upgrade (path, secret, `Origin`, socket limit; refused with an HTTP answer), then
 * keeps one `WsSession` per socket; pushes the status document to every socket on each state
 * change, ending their subscriptions when the server leaves live; pings them on one shared
 * timer; closes them with 1001 when the app closes.
 */
export function registerWsTransport(
  app: FastifyInstance,
  context: ShapeAnswerContext,
  options: WsTransportOptions,
  registry: Registry,
  onUnreachable: () => void,
): void {
  const metrics = new WsMetrics(registry);
  const secret = options.secret === undefined ? undefined : new SecretCheck(options.secret);
  const sessions = new Set<WsSession>();
  const sessionOptions = {
    context,
    maxSubscriptions: options.maxSubscriptions,
    maxBufferedBytes: options.maxBufferedBytes,
    metrics,
    log: app.log,
    onUnreachable,
    onClosed: (session: WsSession) => {
      sessions.delete(session);
      metrics.socketsOpen.dec();
    },
  };
  // No compression: a compressed frame could expand past any size limit (and costs CPU per
  // socket); no client tracking: the sessions are this transport's own set.
  const server = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxFrameBytes,
    perMessageDeflate: false,
    clientTracking: false,
  });
  let closing = false;

  const refuse = (
    socket: Duplex,
    reason: WsRefusalReason,
    status: number,
    body: object,
    headers?: Record<string, string>,
  ) => {
    metrics.upgradesRefused.inc({ reason });
    refuseUpgrade(socket, status, body, headers);
  };
  const unavailable = (socket: Duplex, reason: WsRefusalReason, code: ErrorCode, message: string) =>
    refuse(
      socket,
      reason,
      ERROR_CODES[code].status,
      { code, message },
      {
        [HEADERS.retryAfter]: String(RETRY_AFTER_S),
      },
    );

  app.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // A client that goes away before the answer is written must not crash the process.
    socket.on('error', () => socket.destroy());
    let url: URL;
    try {
      url = new URL(request.url ?? '/', 'http://localhost');
    } catch {
      return refuseUpgrade(socket, 400, { message: 'Bad Request: the URL cannot be read' });
    }
    if (url.pathname !== PATHS.ws || request.headers.upgrade?.toLowerCase() !== 'websocket') {
      return answerAsRequest(app.server, request, socket);
    }
    if (closing) {
      return unavailable(
        socket,
        'shutting-down',
        'SLUICE_ERR_SHUTTING_DOWN',
        'The server is shutting down',
      );
    }
    const secrets = url.searchParams.getAll(PARAMS.secret);
    if (
      secret &&
      !secret.carries(secrets.length === 1 ? secrets[0] : undefined, request.headers.authorization)
    ) {
      return refuse(socket, 'unauthorized', 401, { message: UNAUTHORIZED_MESSAGE });
    }
    const origin = request.headers.origin;
    if (
      options.allowedOrigins &&
      origin !== undefined &&
      !options.allowedOrigins.includes(origin)
    ) {
      return refuse(socket, 'origin', 403, {
        message: 'Forbidden: this Origin may not open WebSockets (SLUICE_WS_ALLOWED_ORIGINS)',
      });
    }
    if (sessions.size >= options.maxSockets) {
      const message = `Too many WebSockets (limit ${options.maxSockets}); retry shortly`;
      return unavailable(socket, 'socket-limit', 'SLUICE_ERR_OVERLOADED', message);
    }
    server.handleUpgrade(request, socket, head, (ws) => {
      const session = new WsSession(ws, sessionOptions, context.status.document());
      sessions.add(session);
      metrics.socketsOpen.inc();
    });
  });

  // A plain GET (no upgrade) says what the path is, rather than a bare 404.
  app.get(PATHS.ws, async (_request, reply) =>
    reply
      .code(426)
      .header(HEADERS.upgrade, 'websocket')
      .header(HEADERS.cacheControl, 'no-store')
      .send({ message: `Upgrade Required: ${PATHS.ws} is a WebSocket (docs/protocol.md §12)` }),
  );

  context.status.onChange(({ to }) => {
    const document = context.status.document();
    const live = to !== 'fallback' && to !== 'unavailable';
    for (const session of sessions) {
      // Ended before the status frame goes out, so no batch follows a frame saying "not live".
      if (!live) session.endSubscriptions();
      session.sendStatus(document);
    }
  });

  const heartbeat = setInterval(() => {
    for (const session of sessions) session.heartbeat();
  }, options.heartbeatMs);
  heartbeat.unref();

  let grace: NodeJS.Timeout | undefined;
  app.addHook('preClose', (done) => {
    closing = true;
    clearInterval(heartbeat);
    for (const session of sessions) {
      session.close(WS_CLOSE_CODES.goingAway, 'server shutting down', 'shutdown');
    }
    // The server waits for every socket to end: one whose client does not answer is cut.
    grace = setTimeout(() => {
      for (const session of sessions) session.terminate();
    }, CLOSE_GRACE_MS);
    grace.unref();
    done();
  });
  app.addHook('onClose', (_app, done) => {
    clearTimeout(grace);
    for (const session of sessions) session.terminate();
    server.close();
    done();
  });
}
