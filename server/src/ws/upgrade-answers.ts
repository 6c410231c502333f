import { ServerResponse, STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { HEADERS } from '@sluice/protocol';

/**
 * Refuses an upgrade with an ordinary HTTP answer (JSON body, never cached), written on the raw
 * socket, which then closes: no WebSocket is opened (docs/protocol.md §12.1).
 */
export function refuseUpgrade(
  socket: Duplex,
  status: number,
  body: object,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  const all = {
    [HEADERS.contentType]: 'application/json',
    [HEADERS.cacheControl]: 'no-store',
    ...headers,
    [HEADERS.contentLength]: String(Buffer.byteLength(text)),
    [HEADERS.connection]: 'close',
  };
  const lines = Object.entries(all).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${lines.join('')}\r\n${text}`);
}

/**
 * Node hands every request with an `Upgrade` header to the upgrade listener once there is one.
 * One for another path or protocol (curl's `Upgrade: h2c`, say) is an ordinary request: Fastify
 * answers it as it would have without the WebSocket transport, then the connection closes (its
 * HTTP parser went with the upgrade, so it cannot carry another request). One with a body is
 * refused: the body would never reach the handler, for the same reason.
 */
export function answerAsRequest(server: Server, request: IncomingMessage, socket: Duplex): void {
  const hasBody =
    request.headers[HEADERS.transferEncoding] !== undefined ||
    Number(request.headers[HEADERS.contentLength] ?? 0) > 0;
  if (hasBody) {
    refuseUpgrade(socket, 400, {
      message: 'Bad Request: a request with a body cannot ask for an upgrade',
    });
    return;
  }
  const response = new ServerResponse(request);
  response.shouldKeepAlive = false;
  response.assignSocket(socket as Socket);
  response.once('finish', () => {
    response.detachSocket(socket as Socket);
    socket.end();
  });
  server.emit('request', request, response);
}
