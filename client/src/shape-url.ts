import { PARAMS, PATHS } from '@sluice/protocol';
import type { LogMode } from './messages.js';
import type { ResolvedParams } from './shape-params.js';
import type { RequestPlan } from './shape-stream-state.js';

/** Resolves a possibly relative URL against the page in browsers. */
export function absoluteUrl(url: string): URL {
  return new URL(url, globalThis.location?.href);
}

/**
 * The URL of one shape request: the shape's params, then what the plan asks for. Parameters are
 * sorted, so streams asking for the same thing send the same URL and a CDN can collapse them.
 */
export function shapeUrl(
  base: string,
  params: ResolvedParams,
  plan: RequestPlan,
  log: LogMode,
): URL {
  const url = absoluteUrl(base);
  for (const [key, value] of Object.entries(params)) {
    if (typeof value === 'string') url.searchParams.set(key, value);
    else for (const [k, v] of Object.entries(value)) url.searchParams.set(`${key}[${k}]`, v);
  }
  url.searchParams.set(PARAMS.offset, plan.offset);
  url.searchParams.set(PARAMS.log, log);
  if (plan.handle !== undefined) url.searchParams.set(PARAMS.handle, plan.handle);
  if (plan.cursor !== undefined) url.searchParams.set(PARAMS.cursor, plan.cursor);
  if (plan.live) url.searchParams.set(PARAMS.live, 'true');
  if (plan.cacheBuster !== undefined) url.searchParams.set(PARAMS.cacheBuster, plan.cacheBuster);
  url.searchParams.sort();
  return url;
}

/**
 * `/v1/status` next to the shape endpoint: a path ending in `/v1/shape` keeps its prefix (a proxy
 * mounted at `/sync/v1/shape` has `/sync/v1/status`); any other URL gets the origin's.
 */
export function defaultStatusUrl(shapeEndpoint: string): string {
  const url = absoluteUrl(shapeEndpoint);
  const prefix = url.pathname.endsWith(PATHS.shape)
    ? url.pathname.slice(0, -PATHS.shape.length)
    : '';
  return new URL(`${prefix}${PATHS.status}`, url.origin).toString();
}

/**
 * The WebSocket endpoint (`/v1/ws`) next to the shape endpoint, as `defaultStatusUrl` finds the
 * status: `http` becomes `ws`, `https` `wss`.
 */
export function defaultSocketUrl(shapeEndpoint: string): string {
  const url = absoluteUrl(shapeEndpoint);
  const prefix = url.pathname.endsWith(PATHS.shape)
    ? url.pathname.slice(0, -PATHS.shape.length)
    : '';
  const socketUrl = new URL(`${prefix}${PATHS.ws}`, url.origin);
  socketUrl.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return socketUrl.toString();
}
