import {
  HEADERS,
  PARAMS,
  SNAPSHOT_END,
  compareLogOffsets,
  formatLogOffset,
} from '@sluice/protocol';
import { requestInvalid } from '../errors/sluice-error.js';
import { newFallbackHandle, snapshotText } from '../shapes/fallback-queries.js';
import { Shape } from '../shapes/shape.js';
import type { SubsetResult, SubsetSpec } from '../shapes/subset-query.js';
import { liveShapeFor } from './answer-shape-request.js';
import {
  decideDegraded,
  notReadyWhileDegraded,
  refetchFallbackAnswer,
} from './degraded-decision.js';
import type { ShapeAnswer } from './shape-answer.js';
import { isDegraded, type ShapeAnswerContext } from './shape-answer-context.js';
import type { ShapeRequest } from './shape-request.js';

/** Where the stream of a client goes on from, and what the query must already see. */
interface StreamPosition {
  handle: string;
  /** `electric-offset`: the client's stream continues after it (docs/protocol.md §3.10). */
  offset: string;
  /** A replica may answer only once it has replayed this far. */
  minLsn: bigint | undefined;
}

/**
 * A subset snapshot (docs/protocol.md §3.10): the shape is resolved as for any request (created
 * if needed; a stale handle is a 409), then its subset is read from Postgres. The answer's
 * `electric-offset` is where the official client's `requestSnapshot` moves its stream to: the
 * position the request names, so nothing is skipped, or for `offset=now` the log's end as it
 * was before the query's snapshot was taken, so every entry up to it is in that snapshot.
 */
export async function subsetAnswer(
  parsed: ShapeRequest,
  subset: SubsetSpec,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer> {
  if (isDegraded(context.status)) return degradedSubsetAnswer(parsed, subset, context);
  const shape = await liveShapeFor(parsed, context);
  if (!(shape instanceof Shape)) return shape;
  try {
    const position = logPosition(shape, parsed);
    const result = await context.subsets.query(
      parsed.definition,
      subset,
      position.minLsn,
      shape.subqueries,
    );
    return subsetResponse(position, result, false);
  } finally {
    shape.markRead();
  }
}

/**
 * While replication is down the subset is read from Postgres all the same. The handle and
 * offset follow the choice an ordinary request would get (`chooseDegradedAnswer`): a shape whose
 * log is known to continue the slot keeps its handle; otherwise the answer names a fallback
 * handle, which sends the client to the live shape (409, a refetch) once replication is back.
 */
async function degradedSubsetAnswer(
  parsed: ShapeRequest,
  subset: SubsetSpec,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer> {
  const { choice, held } = await decideDegraded(parsed, context);
  let position: StreamPosition | undefined;
  switch (choice) {
    case 'serve-log':
      // The choice is made only for a shape the registry holds.
      position = logPosition(held!, parsed);
      break;
    case 'fallback-handle':
      position = { handle: parsed.handle!, offset: parsed.offsetText, minLsn: undefined };
      break;
    case 'fallback-rows':
    case 'nothing-new':
      // A new fallback handle, named once the subset's snapshot is known (below).
      position = undefined;
      break;
    case 'refetch-fallback':
      return refetchFallbackAnswer(parsed, context);
    case 'not-ready':
      throw notReadyWhileDegraded();
  }
  const result = await context.subsets.query(parsed.definition, subset, position?.minLsn);
  // A new fallback handle has no log: after its rows it only says up-to-date. It is named after
  // the subset's snapshot, as fallback rows' handles are, so a live request held on it is sent
  // to fresh rows once a transaction ends after that snapshot (writes made since get confirmed).
  position ??= {
    handle: newFallbackHandle(parsed.definition, snapshotText(result.metadata)),
    offset: formatLogOffset(SNAPSHOT_END),
    minLsn: undefined,
  };
  return subsetResponse(position, result, true);
}

/**
 * The stream position a subset answer names in a shape's log: `-1` stays `-1` (the client reads
 * the whole log afterwards), an offset stays itself, and `now` becomes the log's durable end,
 * read before the query's snapshot is taken. Every entry up to the position named is then
 * visible to that snapshot: it was committed before (replication only sends committed
 * transactions), a replica must have replayed past it, and the snapshot waits for commits just
 * replicated to become visible (`beginSeeing`).
 */
function logPosition(shape: Shape, parsed: ShapeRequest): StreamPosition {
  const end = shape.endOffset;
  const { offset } = parsed;
  if (offset === 'before-all') {
    return { handle: shape.handle, offset: parsed.offsetText, minLsn: undefined };
  }
  const position = offset === 'now' ? end : offset;
  // Past the end of this log, the offset is not one of its positions (§3.7).
  if (compareLogOffsets(position, end) > 0) {
    throw requestInvalid({ [PARAMS.offset]: ['out of bounds'] });
  }
  return {
    handle: shape.handle,
    offset: offset === 'now' ? formatLogOffset(end) : parsed.offsetText,
    // A commit's record starts at its LSN: a replica that replayed it is past it.
    minLsn: position.tx > 0n ? position.tx + 1n : undefined,
  };
}

function subsetResponse(
  position: StreamPosition,
  result: SubsetResult,
  degraded: boolean,
): ShapeAnswer {
  const headers: Record<string, string> = {
    [HEADERS.handle]: position.handle,
    [HEADERS.offset]: position.offset,
    [HEADERS.schema]: result.schemaHeader,
    [HEADERS.snapshot]: 'true',
    // Each answer is a snapshot of its moment: never served again without asking.
    [HEADERS.cacheControl]: 'no-cache',
  };
  if (degraded) headers[HEADERS.fallbackMode] = 'true';
  return {
    status: 200,
    headers,
    body: `{"metadata":${JSON.stringify(result.metadata)},"data":[${result.rows.join(',')}]}`,
  };
}
