import type { IncomingHttpHeaders } from 'node:http';

/** What a request's sender is read from: a Fastify request, or a raw one's headers and address. */
export interface RequestOrigin {
  headers: IncomingHttpHeaders;
  /** The connection's address. */
  ip: string;
}

/**
 * Who a request is from, for per-client limits: the connection's address, or, behind a trusted
 * proxy, the value of the header it sets (`SLUICE_CLIENT_ADDRESS_HEADER`). A list such as
 * `x-forwarded-for: spoofed, client` is read from its last entry, the one the trusted proxy
 * appended; entries before it are whatever the client sent. A request without the header (one
 * that did not come through the proxy) counts as its connection's address.
 */
export function clientAddress(request: RequestOrigin, header: string | undefined): string {
  const value = header === undefined ? undefined : request.headers[header];
  const text = Array.isArray(value) ? value.join(',') : value;
  const last = text?.split(',').at(-1)?.trim();
  return last || request.ip;
}
