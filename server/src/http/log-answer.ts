import {
  HEADERS,
  PARAMS,
  SNAPSHOT_END,
  compareLogOffsets,
  formatLogOffset,
  type LogOffset,
  type RequestOffset,
} from '@sluice/protocol';
import { SluiceError, requestInvalid, shuttingDown } from '../errors/sluice-error.js';
import { newFallbackHandle } from '../shapes/fallback-queries.js';
import type { Shape } from '../shapes/shape.js';
import type { ReadResult } from '../storage/shape-storage.js';
import { cacheControl } from './cache-policy.js';
import { currentShape } from './current-shape.js';
import { nextLiveCursor } from './live-cursor.js';
import { mustRefetchAnswer } from './must-refetch-answer.js';
import type { ShapeAnswer } from './shape-answer.js';
import { isDegraded, type LongPoll, type ShapeAnswerContext } from './shape-answer-context.js';
import type { ShapeRequest } from './shape-request.js';
import { sharedLiveAnswer } from './shared-live-answer.js';
import { upToDateMessage } from './up-to-date-message.js';

/** How long a request for an offset past the log's end waits before it is a 400. */
const OUT_OF_BOUNDS_GRACE_MS = 1_000;

/**
 * How long a request waiting on a snapshot sleeps at most before looking again: each sealed
 * chunk, the snapshot's end, deletion and shutdown wake it anyway.
 */
const SNAPSHOT_WAIT_MS = 1_000;

/** What an answer from the log needs of its request: a held long-poll keeps no more. */
export type LogRead<Offset extends RequestOffset> = Pick<
  ShapeRequest,
  'offsetText' | 'live' | 'cursor'
> & { offset: Offset };

export type Wait = 'ready' | 'timed-out' | 'out-of-bounds' | 'deleted' | 'closing';

/**
 * Before reading at `offset`: an offset past the end of the log gets a moment for a flush to
 * land, then is out of bounds; a live request with nothing new is held until a flush wakes it,
 * the long-poll ends, the shape goes away or the server closes.
 */
export async function waitForEntries(
  shape: Shape,
  offset: LogOffset,
  live: boolean,
  longPoll: LongPoll,
): Promise<Wait> {
  if (shape.hasEntriesAfter(offset)) return 'ready';
  if (compareLogOffsets(offset, shape.endOffset) > 0) {
    await shape.waitForChange(OUT_OF_BOUNDS_GRACE_MS);
    if (shape.deleted) return 'deleted';
    return compareLogOffsets(offset, shape.endOffset) <= 0 ? 'ready' : 'out-of-bounds';
  }
  if (!live) return 'ready';
  // A wake with nothing new for this offset (a shape's creation ending after its first chunk
  // was served, a reader's refresh that found nothing) waits on: answered then, it would be an
  // empty answer the client must ask again for, before the long-poll's time.
  const deadline = Date.now() + longPoll.timeoutMs;
  for (;;) {
    if (longPoll.closing.aborted) return 'closing';
    const left = deadline - Date.now();
    if (left <= 0) return 'timed-out';
    await shape.waitForChange(left);
    if (shape.deleted) return 'deleted';
    if (longPoll.closing.aborted) return 'closing';
    if (shape.hasEntriesAfter(offset)) return 'ready';
  }
}

/**
 * While a shape's snapshot is being written: a read of the snapshot (`-1`, `0_c`) goes ahead
 * once a sealed, durable chunk holds what it asks for, any other read once the snapshot is
 * complete. Only sealed chunks are served, so the answer is the one every later reader gets
 * (same entries, offsets and boundaries: the bytes a cache may hold for good).
 */
async function waitForSnapshot(
  shape: Shape,
  offset: ShapeRequest['offset'],
  context: ShapeAnswerContext,
): Promise<'ready' | 'deleted' | 'closing'> {
  const inSnapshot =
    offset === 'before-all' || (offset !== 'now' && offset.tx === 0n && offset.op !== Infinity);
  // The creation's end, not `ready`: a live request answered before the creation's last
  // notification would be woken by it with nothing new.
  let created = false;
  const creation = context.registry.created(shape).then(() => (created = true));
  for (;;) {
    if (shape.deleted) return 'deleted';
    if (context.longPoll.closing.aborted) return 'closing';
    if (created || (inSnapshot && shape.log.hasSealedAfter(offset))) return 'ready';
    // Each sealed chunk, the creation's end, deletion and shutdown wake it.
    await Promise.race([shape.waitForChange(SNAPSHOT_WAIT_MS), creation]);
  }
}

/**
 * The answer from a shape's log (docs/protocol.md §3–5). While replication is down the log is
 * served read-only: the same data, marked with `electric-fallback-mode` and a short cache
 * lifetime. Live answers with news are built once for every request at the same position
 * (`sharedLiveAnswer`); only the cursor is each request's own.
 */
export async function logAnswer(
  shape: Shape,
  parsed: ShapeRequest,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer> {
  const { offset, live } = parsed;
  // Until its creation has ended, not only its snapshot: see waitForSnapshot.
  if (!shape.ready || context.registry.creating(shape)) {
    const wait = await waitForSnapshot(shape, offset, context);
    if (wait === 'deleted') {
      // The snapshot failed: a client served none of it gets the error waiting for it would
      // have got; one that has chunks of this handle starts again (409), as for any deleted shape.
      const failure = shape.snapshotFailure;
      if (offset === 'before-all' && failure instanceof Error) {
        // Answered once the failed creation has removed what it made, as before it was served
        // in progress: a client told of the failure finds no half-made shape behind it.
        await context.registry.created(shape);
        throw failure;
      }
      return refetchDeleted(shape, context);
    }
    if (wait === 'closing') throw shuttingDown();
  }
  if (offset === 'now') return answerFrom(shape, parsed, context, undefined, false, facts(context));
  if (offset === 'before-all') return readAnswer(shape, { ...parsed, offset }, context, false);
  const wait = await waitForEntries(shape, offset, live, context.longPoll);
  return answerAfterWait(shape, { ...parsed, offset }, context, wait);
}

/**
 * The answer to a request for `offset` once `waitForEntries` has ended its wait as `wait`: its
 * refusal, its refetch, or what the log holds after `offset`.
 */
export async function answerAfterWait(
  shape: Shape,
  parsed: LogRead<LogOffset>,
  context: ShapeAnswerContext,
  wait: Wait,
): Promise<ShapeAnswer> {
  if (wait === 'out-of-bounds') throw requestInvalid({ [PARAMS.offset]: ['out of bounds'] });
  if (wait === 'deleted') return refetchDeleted(shape, context);
  if (wait === 'closing') throw shuttingDown();
  const timedOut = wait === 'timed-out';
  if (!parsed.live || timedOut) return readAnswer(shape, parsed, context, timedOut);
  const key = {
    offsetText: parsed.offsetText,
    durable: shape.log.durableOffset,
    ...facts(context),
  };
  const shared = await readOr(shape, context, () =>
    sharedLiveAnswer(shape, key, async () => {
      const read = await shape.log.read(parsed.offset);
      // Built from the facts of its key, so that it is what every request sharing it is owed.
      const answer = answerFrom(shape, parsed, context, read, false, key);
      return { headers: answer.headers, body: answer.body };
    }),
  );
  if ('status' in shared) return shared;
  // Spread: the cursor keeps its place among the headers, as in every other answer.
  const cursor = nextLiveCursor(context.longPoll.timeoutMs, parsed.cursor);
  return {
    status: 200,
    headers: { ...shared.headers, [HEADERS.cursor]: cursor },
    body: shared.body,
  };
}

/** The answer from what the log holds after the request's offset, read now. */
async function readAnswer(
  shape: Shape,
  parsed: LogRead<LogOffset | 'before-all'>,
  context: ShapeAnswerContext,
  timedOut: boolean,
): Promise<ShapeAnswer> {
  const read = await readOr(shape, context, () => shape.log.read(parsed.offset));
  if ('status' in read) return read;
  return answerFrom(shape, parsed, context, read, timedOut, facts(context));
}

/** What an answer says of replication, read when answering. */
function facts(context: ShapeAnswerContext): { lastSeenLsn: bigint; degraded: boolean } {
  return { lastSeenLsn: context.replication.lastSeenLsn(), degraded: isDegraded(context.status) };
}

/**
 * What `readLog` gives, or what a failed read means: deleted or rotated while this request read
 * it (its log closed or its files gone), or the server closing its logs as it shuts down.
 */
async function readOr<T>(
  shape: Shape,
  context: ShapeAnswerContext,
  readLog: () => Promise<T>,
): Promise<T | ShapeAnswer> {
  try {
    return await readLog();
  } catch (error) {
    if (shape.deleted) return refetchDeleted(shape, context);
    if (context.longPoll.closing.aborted) throw shuttingDown();
    throw error;
  }
}

/**
 * The answer that `read` makes (none: `offset=now`, nothing read), given the facts read when
 * answering: replication's position and whether it is down.
 */
function answerFrom(
  shape: Shape,
  parsed: LogRead<RequestOffset>,
  context: ShapeAnswerContext,
  read: ReadResult | undefined,
  timedOut: boolean,
  { lastSeenLsn, degraded }: { lastSeenLsn: bigint; degraded: boolean },
): ShapeAnswer & { body: Buffer } {
  const { offset, live } = parsed;
  const responseOffset =
    read === undefined || offset === 'now'
      ? shape.endOffset
      : (read.lastOffset ?? nothingAfter(offset, shape));
  const reachedEnd = read?.reachedEnd ?? true;

  const isInitial = offset === 'before-all';
  // The first chunk never says up-to-date: the client must come back for the rest (§3).
  // Nor does a snapshot chunk, as in Electric: the client asks once more and is told up-to-date
  // at `0_inf`, the end of the snapshot (docs/protocol.md §3.4).
  const inSnapshot = responseOffset.tx === 0n && responseOffset.op !== Infinity;
  const sendUpToDate = reachedEnd && !isInitial && !inSnapshot;
  const extra = sendUpToDate ? [upToDateMessage(lastSeenLsn)] : [];

  const offsetText = formatLogOffset(responseOffset);
  const headers: Record<string, string> = {
    [HEADERS.handle]: shape.handle,
    [HEADERS.offset]: offsetText,
  };
  if (sendUpToDate) headers[HEADERS.upToDate] = '';
  // As Electric: `false` only on the answers that say "nothing new" by design.
  headers[HEADERS.hasData] = String(!(timedOut || offset === 'now'));
  if (live) headers[HEADERS.cursor] = nextLiveCursor(context.longPoll.timeoutMs, parsed.cursor);
  else headers[HEADERS.schema] = shape.metadata.schemaHeader;
  // Decided when answering: a request held through the end of an outage is a live answer.
  if (degraded) {
    headers[HEADERS.fallbackMode] = 'true';
    headers[HEADERS.cacheControl] = cacheControl('fallback', context.cache);
  } else {
    const kind = live || offset === 'now' ? 'live' : isInitial ? 'initial' : 'catch-up';
    headers[HEADERS.cacheControl] = cacheControl(kind, context.cache);
  }
  // A long-poll that timed out answers the same offsets as the last one: a unique tag keeps
  // caches from treating the two as the same response.
  const unique = timedOut
    ? `:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
    : '';
  // A fallback answer must not be revalidated into a live one by a cache, or the reverse.
  const mode = degraded ? ':fallback' : '';
  headers[HEADERS.etag] = `"${shape.handle}:${parsed.offsetText}:${offsetText}${unique}${mode}"`;
  // The entries' bytes as the log holds them, copied once: no string per entry, no join.
  const body = read ? read.jsonArray(extra) : Buffer.from(`[${extra.join(',')}]`);
  return { status: 200, headers, body };
}

/**
 * Where a read that served nothing ends: at a change offset, there (nothing is after it); at a
 * snapshot offset, the snapshot is all the log holds and its end is `0_inf`, which is where
 * Electric sends a client that has read the last snapshot chunk (docs/protocol.md §3.4).
 */
function nothingAfter(offset: LogOffset | 'before-all', shape: Shape): LogOffset {
  if (offset === 'before-all') return shape.endOffset;
  return offset.tx === 0n ? SNAPSHOT_END : offset;
}

/**
 * The shape went away while the request waited (rotated, dropped, deleted): start again, from
 * the shape made anew. Also while replication is down: a slot found lost rotates every shape just
 * before streaming resumes, and a fallback handle would cost those clients a second refetch.
 */
export async function refetchDeleted(
  shape: Shape,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer> {
  const { definition } = shape.metadata;
  try {
    const current = await currentShape(context.registry, definition);
    return mustRefetchAnswer(current.handle, context.cache);
  } catch (error) {
    // The table itself is gone or changed: the next request will say what is wrong. The client
    // was held, so it is owed a refetch, not an error about a request that was fine when made.
    if (!(error instanceof SluiceError && error.code === 'SLUICE_ERR_SHAPE_INVALID')) throw error;
    return mustRefetchAnswer(newFallbackHandle(definition), context.cache);
  }
}
