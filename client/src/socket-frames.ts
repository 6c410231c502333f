/*
 * What the stream sends and reads on the shared socket (docs/protocol.md §12), as the HTTP
 * request and answer each stands for: the shape's params of a subscribe frame, the secret of the
 * upgrade, a `messages` frame as the response event of a long-poll, an error frame as the
 * `FetchError` of the HTTP answer.
 */
import {
  CONTROL,
  HEADERS,
  PARAMS,
  type WsErrorFrame,
  type WsMessagesFrame,
  type WsShapeParams,
} from '@sluice/protocol';
import { FetchError, MalformedResponseError } from './errors.js';
import type { LogMode, Offset } from './messages.js';
import type { Schema } from './schema.js';
import type { ResolvedParams } from './shape-params.js';
import type { RequestPlan, ResponseEvent } from './shape-stream-state.js';

/** The shape's definition as a subscribe frame carries it: the shape's own params, no others. */
export function subscribeParams(params: ResolvedParams, log: LogMode): WsShapeParams {
  const text = (name: string) => {
    const value = params[name];
    return typeof value === 'string' ? value : undefined;
  };
  const values = params[PARAMS.params];
  return {
    table: text(PARAMS.table) ?? '',
    where: text(PARAMS.where),
    params: typeof values === 'object' ? values : undefined,
    columns: text(PARAMS.columns),
    replica: text(PARAMS.replica) as WsShapeParams['replica'],
    log,
  };
}

/**
 * The secret for the upgrade URL (a browser cannot set headers on a WebSocket): the `secret`
 * param, else the value of a bearer `authorization` header.
 */
export function upgradeSecret(
  params: ResolvedParams,
  headers: Record<string, string>,
): string | undefined {
  const secret = params[PARAMS.secret];
  if (typeof secret === 'string') return secret;
  const [, authorization] =
    Object.entries(headers).find(([name]) => name.toLowerCase() === HEADERS.authorization) ?? [];
  return /^Bearer\s+(.+)$/i.exec(authorization ?? '')?.[1];
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * A `messages` frame as the answer to the long-poll `plan` it stands for (never in fallback: the
 * server serves subscriptions only while live), with its (unparsed) messages. `source` names the
 * socket in errors.
 */
export function frameResponse(
  plan: RequestPlan,
  frame: WsMessagesFrame,
  source: string,
): { event: ResponseEvent; messages: Record<string, unknown>[] } {
  const messages: unknown = frame.messages;
  const schema: unknown = frame.schema;
  if (typeof frame.handle !== 'string' || typeof frame.offset !== 'string')
    throw new MalformedResponseError(source, 'a messages frame lacks its handle or offset');
  if (!Array.isArray(messages) || !messages.every((m) => isObject(m) && isObject(m.headers)))
    throw new MalformedResponseError(source, 'a messages frame has no array of messages');
  if (schema !== undefined && !isObject(schema))
    throw new MalformedResponseError(source, 'the schema of a messages frame is not an object');
  const last = messages.at(-1) as { headers: Record<string, unknown> } | undefined;
  const event: ResponseEvent = {
    type: 'response',
    request: plan,
    handle: frame.handle,
    offset: frame.offset as Offset,
    schema: schema as Schema | undefined,
    fallbackMode: false,
    upToDate: last?.headers.control === CONTROL.upToDate,
    now: Date.now(),
  };
  return { event, messages: messages as Record<string, unknown>[] };
}

/** An error frame as the `FetchError` the HTTP answer would have been (`retry_after` a header). */
export function frameError(frame: WsErrorFrame, source: string): FetchError {
  const { status, code, message, errors } = frame;
  const headers: Record<string, string> =
    typeof frame.retry_after === 'number'
      ? { [HEADERS.retryAfter]: String(frame.retry_after) }
      : {};
  const json = errors === undefined ? { code, message } : { code, message, errors };
  return new FetchError(status, { json }, headers, source);
}
