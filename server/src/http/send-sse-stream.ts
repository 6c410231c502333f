import { Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';
import type { SseStream } from './sse-stream.js';

/**
 * Sends an SSE stream over HTTP: the headers at once (the client opens the stream on them, and
 * nothing else may be sent while it is caught up), then each event as it comes, unbuffered.
 * `onEnd` runs once, when the response closes: the stream ended, or its client went away.
 */
export function sendSseStream(
  reply: FastifyReply,
  stream: SseStream,
  onEnd: () => void,
): FastifyReply {
  const stop = new AbortController();
  const end = () => {
    stop.abort();
    onEnd();
  };
  // The client may have gone while the stream was being decided: its close came already.
  if (reply.raw.destroyed) end();
  else reply.raw.once('close', end);
  const raw = reply.raw;
  const events = stream.events(stop.signal);
  // Fastify sets the headers just before it starts reading the body; Node sends them with the
  // first bytes, which may be a long time coming.
  async function* headersFirst(): AsyncGenerator<string> {
    if (!raw.destroyed) raw.flushHeaders();
    yield* events;
  }
  // Not object mode: at most one read of the log waits beyond what the socket takes.
  const body = Readable.from(headersFirst(), { objectMode: false });
  return reply.code(200).headers(stream.headers).send(body);
}
