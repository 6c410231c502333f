import { HEADERS, SNAPSHOT_END, formatLogOffset } from '@sluice/protocol';
import { SluiceError, shuttingDown } from '../errors/sluice-error.js';
import { newFallbackHandle, type FallbackResult } from '../shapes/fallback-queries.js';
import { cacheControl } from './cache-policy.js';
import { chooseFallbackHandleAnswer } from './degraded-choice.js';
import { nextLiveCursor } from './live-cursor.js';
import { logAnswer } from './log-answer.js';
import { mustRefetchAnswer } from './must-refetch-answer.js';
import {
  decideDegraded,
  notReadyWhileDegraded,
  refetchFallbackAnswer,
} from './degraded-decision.js';
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
  const { choice, held } = await decideDegraded(parsed, context);
  switch (choice) {
    case 'serve-log':
      // The choice is made only for a shape the registry holds.
      return logAnswer(held!, parsed, context);
    case 'fallback-rows':
      return fallbackRows(parsed, context);
    case 'fallback-handle':
      return fallbackHandleAnswer(parsed, parsed.handle!, context);
    case 'nothing-new':
      // Under the handle of the shape's fallback rows (read for its schema anyway): a client
      // following it is then sent to fresh rows once they may have changed.
      return upToDateAnswer(parsed, (await fallbackResult(parsed, context)).handle, context);
    case 'refetch-fallback':
      return refetchFallbackAnswer(parsed, context);
    case 'not-ready':
      throw notReadyWhileDegraded();
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
  const result = await fallbackResult(parsed, context);
  const upToDate = upToDateMessage(context.replication.lastSeenLsn());
  // The rows' own snapshot, before the up-to-date: no transaction ids flow while replication is
  // down, and a client awaiting one learns from it that these rows include its writes.
  const tail = `${result.rows.length > 0 ? ',' : ''}${result.snapshotEnd},${upToDate}]`;
  return {
    status: 200,
    headers: {
      [HEADERS.handle]: result.handle,
      [HEADERS.offset]: FALLBACK_END,
      [HEADERS.schema]: result.schemaHeader,
      [HEADERS.upToDate]: '',
      [HEADERS.hasData]: 'true',
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
 * replication is back the client is sent to the live shape (a 409 naming its handle). A held
 * request whose rows may have changed meanwhile (a transaction ended since their snapshot) is
 * sent to fresh fallback rows instead: no change reaches such a client any other way, and a
 * write made during the outage must reach its writer within seconds.
 */
async function fallbackHandleAnswer(
  parsed: ShapeRequest,
  handle: string,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer> {
  // A non-live request is answered at once.
  const held = parsed.live ? await holdFallbackHandle(handle, context) : undefined;
  if (held === 'changed' && isDegraded(context.status)) {
    return mustRefetchAnswer(newFallbackHandle(parsed.definition), context.cache, {
      fallbackMode: true,
    });
  }
  const heldInVain = held === 'held-in-vain';
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

/**
 * Holds a live request on a fallback handle: `live` as soon as replication is back, `changed`
 * once the database is seen past the snapshot of the handle's rows, `held-in-vain` after the
 * long-poll timeout or on close.
 */
function holdFallbackHandle(
  handle: string,
  context: ShapeAnswerContext,
): Promise<'live' | 'changed' | 'held-in-vain'> {
  const { status, longPoll } = context;
  if (!isDegraded(status)) return Promise.resolve('live');
  if (longPoll.closing.aborted) return Promise.resolve('held-in-vain');
  return new Promise((resolve) => {
    const watching = new AbortController();
    const finish = (outcome: 'live' | 'changed' | 'held-in-vain') => {
      clearTimeout(timer);
      stop();
      watching.abort();
      longPoll.closing.removeEventListener('abort', onAbort);
      resolve(outcome);
    };
    const onAbort = () => finish('held-in-vain');
    const timer = setTimeout(() => finish('held-in-vain'), longPoll.timeoutMs);
    const stop = status.onChange(({ to }) => {
      if (to === 'live') finish('live');
    });
    longPoll.closing.addEventListener('abort', onAbort);
    void context.fallback.changedSince(handle, watching.signal).then((changed) => {
      if (changed) finish('changed');
    });
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
  headers[HEADERS.hasData] = 'false'; // nothing new, as a long-poll timeout
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
  return (await fallbackResult(parsed, context)).schemaHeader;
}

/** The shape's fallback rows, shared by the window's identical requests. */
async function fallbackResult(
  parsed: ShapeRequest,
  context: ShapeAnswerContext,
): Promise<FallbackResult> {
  // Even when the probe finds the database down, the query is tried: the executor's retries and
  // circuit breaker decide how long that may take (a 503 at once while the breaker is open).
  const pending = context.fallback.get(parsed.definition);
  if (!pending) throw fallbackOverloaded();
  return pending;
}
