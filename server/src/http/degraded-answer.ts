import { HEADERS, SNAPSHOT_END, formatLogOffset } from '@sluice/protocol';
import { SluiceError, shuttingDown } from '../errors/sluice-error.js';
import { isFallbackHandle, newFallbackHandle } from '../shapes/fallback-queries.js';
import { cacheControl } from './cache-policy.js';
import { chooseDegradedAnswer, chooseFallbackHandleAnswer } from './degraded-choice.js';
import { nextLiveCursor } from './live-cursor.js';
import { logAnswer } from './log-answer.js';
import { mustRefetchAnswer } from './must-refetch-answer.js';
import type { ShapeAnswer } from './shape-answer.js';
import { isDegraded, type ShapeAnswerContext } from './shape-answer-context.js';
import type { ShapeRequest } from './shape-request.js';
import { upToDateMessage } from './up-to-date-message.js';

/** Where fallback rows end: after it, a fallback handle only ever says up-to-date. */
const FALLBACK_END = formatLogOffset(SNAPSHOT_END);

/**
 * `GET /v1/shape` while replication is down (docs/protocol.md §7): initial requests get the
 * shape's rows queried from Postgres (fallback rows); shapes whose log is known to continue the
 * slot are served from it, read-only; fallback handles are held like live requests and told to refetch
 * once live again. With the database down too, only what the logs hold can be answered.
 */
export async function degradedAnswer(
  parsed: ShapeRequest,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer> {
  const held = context.registry.find(parsed.definition);
  const continuityChecked = await context.replication.continuityChecked(0);
  const choice = chooseDegradedAnswer(parsed, {
    fallbackHandle: parsed.handle !== undefined && isFallbackHandle(parsed.handle),
    held,
    continuityChecked,
    databaseDown: context.status.current().state === 'unavailable',
  });
  switch (choice) {
    case 'serve-log':
      // The choice is made only for a shape the registry holds.
      return logAnswer(held!, parsed, context);
    case 'fallback-rows':
      return fallbackRows(parsed, context);
    case 'fallback-handle':
      return fallbackHandleAnswer(parsed, parsed.handle!, context);
    case 'nothing-new':
      return upToDateAnswer(parsed, newFallbackHandle(parsed.definition), context);
    case 'refetch-fallback':
      return mustRefetchAnswer(newFallbackHandle(parsed.definition), context.cache, {
        fallbackMode: true,
      });
    case 'not-ready':
      throw new SluiceError(
        'SLUICE_ERR_NOT_READY',
        'Replication is down and stored shapes cannot be checked yet; retry shortly',
      );
  }
}

function fallbackOverloaded(): SluiceError {
  return new SluiceError(
    'SLUICE_ERR_FALLBACK_OVERLOADED',
    'Too many fallback queries are running; retry shortly',
  );
}

async function fallbackRows(
  parsed: ShapeRequest,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer> {
  // Even when the probe finds the database down, the query is tried: the executor's retries and
  // circuit breaker decide how long that may take (a 503 at once while the breaker is open).
  const pending = context.fallback.get(parsed.definition);
  if (!pending) throw fallbackOverloaded();
  const result = await pending;
  const upToDate = upToDateMessage(context.replication.lastSeenLsn());
  const tail = `${result.rows.length > 0 ? ',' : ''}${upToDate}]`;
  return {
    status: 200,
    headers: {
      [HEADERS.handle]: result.handle,
      [HEADERS.offset]: FALLBACK_END,
      [HEADERS.schema]: result.schemaHeader,
      [HEADERS.upToDate]: '',
      [HEADERS.fallbackMode]: 'true',
      [HEADERS.etag]: `"${result.handle}:-1:${FALLBACK_END}"`,
      [HEADERS.cacheControl]: cacheControl('fallback', context.cache),
    },
    // The rows are shared by every request of the window: streamed, never copied per request.
    body: [Buffer.from('['), result.rows, Buffer.from(tail)],
  };
}

/**
 * A fallback handle has no log: live requests are held for the long-poll timeout, and once
 * replication is back the client is sent to the live shape (a 409 naming its handle).
 */
async function fallbackHandleAnswer(
  parsed: ShapeRequest,
  handle: string,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer> {
  const heldInVain = parsed.live && !(await liveWithin(context));
  const choice = chooseFallbackHandleAnswer({
    heldInVain,
    closing: context.longPoll.closing.aborted,
    degraded: isDegraded(context.status),
  });
  switch (choice) {
    case 'shutting-down':
      throw shuttingDown();
    case 'nothing-new':
      return upToDateAnswer(parsed, handle, context);
    case 'refetch-live': {
      const live = await context.registry.getOrCreate(parsed.definition);
      return mustRefetchAnswer(live.handle, context.cache);
    }
  }
}

/** Resolves true as soon as replication is back, false after the long-poll timeout or on close. */
function liveWithin(context: ShapeAnswerContext): Promise<boolean> {
  const { status, longPoll } = context;
  if (!isDegraded(status)) return Promise.resolve(true);
  if (longPoll.closing.aborted) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    const finish = (live: boolean) => {
      clearTimeout(timer);
      stop();
      longPoll.closing.removeEventListener('abort', onAbort);
      resolve(live);
    };
    const onAbort = () => finish(false);
    const timer = setTimeout(() => finish(false), longPoll.timeoutMs);
    const stop = status.onChange(({ to }) => {
      if (to === 'live') finish(true);
    });
    longPoll.closing.addEventListener('abort', onAbort);
  });
}

/** Nothing new under a handle that has no log: `up-to-date` at the offset asked for. */
async function upToDateAnswer(
  parsed: ShapeRequest,
  handle: string,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer> {
  const headers: Record<string, string> = {};
  // Clients require `electric-schema` on every non-live answer (the official client fails for
  // good without it): from the shape the server holds, else from fallback rows (shared by
  // the window's identical requests, like any other).
  if (parsed.live) {
    headers[HEADERS.cursor] = nextLiveCursor(context.longPoll.timeoutMs, parsed.cursor);
  } else {
    headers[HEADERS.schema] = await schemaOf(parsed, context);
  }
  headers[HEADERS.handle] = handle;
  headers[HEADERS.offset] = parsed.offset === 'now' ? FALLBACK_END : parsed.offsetText;
  headers[HEADERS.upToDate] = '';
  headers[HEADERS.fallbackMode] = 'true';
  headers[HEADERS.cacheControl] = cacheControl('fallback', context.cache);
  return {
    status: 200,
    headers,
    body: `[${upToDateMessage(context.replication.lastSeenLsn())}]`,
  };
}

/** The shape's `electric-schema`: from the shape held, else from fallback rows. */
async function schemaOf(parsed: ShapeRequest, context: ShapeAnswerContext): Promise<string> {
  const held = context.registry.find(parsed.definition);
  if (held) return held.metadata.schemaHeader;
  const pending = context.fallback.get(parsed.definition);
  if (!pending) throw fallbackOverloaded();
  return (await pending).schemaHeader;
}
