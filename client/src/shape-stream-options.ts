import type { BackoffOptions } from './backoff.js';
import {
  InvalidShapeOptionsError,
  InvalidSignalError,
  MissingShapeHandleError,
  MissingShapeUrlError,
} from './errors.js';
import type { LiveTransport, WebSocketConstructor } from './live-socket.js';
import type { LogMode, Offset } from './messages.js';
import type { ExternalHeadersRecord, ExternalParamsRecord } from './shape-params.js';
import { validateParams } from './shape-params.js';
import type { Mode } from './shape-stream-state.js';
import type { Parser } from './value-parser.js';

/** New params or headers to retry with; returned from `onError`. */
export interface RetryOpts {
  params?: ExternalParamsRecord;
  headers?: ExternalHeadersRecord;
}

/** Return an object (even `{}`) to retry, nothing to stop the stream. */
export type ShapeStreamErrorHandler = (
  error: Error,
) => void | RetryOpts | Promise<void | RetryOpts>;

/**
 * The options of `@electric-sql/client`'s ShapeStream that Sluice's client supports, with the
 * same names and meanings, plus the fallback extension's (docs/protocol.md §7).
 */
export interface ShapeStreamOptions<Extensions = never> {
  /** The shape endpoint, e.g. `http://localhost:3000/v1/shape` (or a proxy in front of it). */
  url: string;
  /** The shape (`table`, `where`, `params`, `columns`, `replica`, `log`) and any custom params. */
  params?: ExternalParamsRecord;
  /** Resume from a stored position: an offset other than `-1`/`now` needs its `handle`. */
  offset?: Offset;
  handle?: string;
  /** False stops after the first up-to-date; true (the default) follows changes. */
  subscribe?: boolean;
  /** Aborting it stops the stream for good. */
  signal?: AbortSignal;
  headers?: ExternalHeadersRecord;
  fetchClient?: typeof fetch;
  backoffOptions?: BackoffOptions;
  /** Parsers by Postgres type name, used before the default ones. */
  parser?: Parser<Extensions>;
  /** `changes_only` starts from an empty snapshot; also accepted as `params.log`. */
  log?: LogMode;
  onError?: ShapeStreamErrorHandler;

  /** Sluice's `/v1/status`; by default the one next to `url`. */
  statusUrl?: string;
  /** How often the status is polled while in fallback (ms; default 5,000). */
  statusPollIntervalMs?: number;
  /** How often the fallback rows are refreshed while in fallback (ms; default 30,000). */
  fallbackRefreshIntervalMs?: number;
  /** Called with the first mode the server reports, then on every change. */
  onModeChange?: (mode: Mode) => void;

  /**
   * How the live part is followed once up to date (docs/protocol.md §12): `auto` (the default)
   * over the page's shared WebSocket when the runtime has one, with long-polls while the upgrade
   * fails; `websocket` only over it; `long-poll` never over it. Snapshots and catch-ups are HTTP.
   */
  liveTransport?: LiveTransport;
  /** A WebSocket constructor for runtimes without a global one (Node 20: the `ws` package's). */
  webSocket?: WebSocketConstructor;
  /** Sluice's `/v1/ws`; by default the one next to `url` (`…/v1/shape` → `ws(s)://…/v1/ws`). */
  webSocketUrl?: string;
}

const LIVE_TRANSPORTS: readonly string[] = [
  'auto',
  'websocket',
  'long-poll',
] satisfies LiveTransport[];

/** The WebSocket a stream may use: the option's, else the runtime's, else none. */
export function webSocketOf(
  options: ShapeStreamOptions<unknown>,
): WebSocketConstructor | undefined {
  if (options.liveTransport === 'long-poll') return undefined;
  return options.webSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
}

export const STATUS_POLL_INTERVAL_MS = 5_000;
export const FALLBACK_REFRESH_INTERVAL_MS = 30_000;

function positiveInterval(name: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isFinite(value) && value > 0))
    throw new InvalidShapeOptionsError(`${name} must be a positive number of milliseconds`);
}

export function validateOptions(options: ShapeStreamOptions<unknown>): void {
  if (!options.url) throw new MissingShapeUrlError();
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal))
    throw new InvalidSignalError();
  if (options.offset !== undefined && options.offset !== '-1' && options.offset !== 'now')
    if (!options.handle) throw new MissingShapeHandleError();
  positiveInterval('statusPollIntervalMs', options.statusPollIntervalMs);
  positiveInterval('fallbackRefreshIntervalMs', options.fallbackRefreshIntervalMs);
  validateParams(options.params);
  if (options.liveTransport !== undefined && !LIVE_TRANSPORTS.includes(options.liveTransport))
    throw new InvalidShapeOptionsError(
      `liveTransport must be one of ${LIVE_TRANSPORTS.join(', ')}`,
    );
  if (options.liveTransport === 'websocket' && !webSocketOf(options))
    throw new InvalidShapeOptionsError(
      "liveTransport 'websocket' needs a WebSocket: this runtime has none, pass the webSocket option",
    );
}
