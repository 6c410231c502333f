import { PARAMS } from '@sluice/protocol';

const REDACTED = '[redacted]';

/** A query key as the query-string parser reads it (form-style: `+` is a space, `%XX` decoded). */
function decodedKey(raw: string): string {
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '));
  } catch {
    return raw;
  }
}

/**
 * The URL with the value of every `secret` parameter replaced, however its name is encoded
 * (`%73ecret` is read as `secret` too).
 */
export function redactedUrl(url: string): string {
  const start = url.indexOf('?');
  if (start < 0) return url;
  const parts = url
    .slice(start + 1)
    .split('&')
    .map((part) => {
      const equals = part.indexOf('=');
      const key = equals < 0 ? part : part.slice(0, equals);
      return decodedKey(key) === PARAMS.secret ? `${key}=${REDACTED}` : part;
    });
  return `${url.slice(0, start)}?${parts.join('&')}`;
}

/** What the serializer reads of a request: a Fastify request has it all. */
export interface LoggedRequest {
  method: string;
  url: string;
  host: string;
  ip: string;
  socket: { remotePort?: number | undefined };
}

/**
 * Fastify's request log serializer, with `secret` redacted: Fastify logs every request's URL at
 * `info`, and the secret must never reach a log (docs/security.md).
 */
export const LOG_SERIALIZERS = {
  req(request: LoggedRequest) {
    return {
      method: request.method,
      url: redactedUrl(request.url),
      host: request.host,
      remoteAddress: request.ip,
      remotePort: request.socket.remotePort,
    };
  },
};
