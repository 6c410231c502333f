import type { FastifyRequest } from 'fastify';

/**
 * Who a request is from, for per-client limits: the connection's address, or, behind a trusted
 * proxy, the value of the header it sets (`SLUICE_CLIENT_ADDRESS_HEADER`). A list such as
 * `x-forwarded-for: spoofed, client` is read from its last entry, the one the trusted proxy
 * appended; entries before it are whatever the client sent. A request without the header (one
 * that did not come through the proxy) counts as its connection's address.
 */
export function clientAddress(request: FastifyRequest, header: string | undefined): string {
  const value = header === undefined ? undefined : request.headers[header];
  const text = Array.isArray(value) ? value.join(',') : value;
  const last = text?.split(',').at(-1)?.trim();
  return last || request.ip;
}
