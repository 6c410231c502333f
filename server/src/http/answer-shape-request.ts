import { SluiceError } from '../errors/sluice-error.js';
import { Shape } from '../shapes/shape.js';
import { currentShape } from './current-shape.js';
import { degradedAnswer } from './degraded-answer.js';
import { logAnswer } from './log-answer.js';
import { mustRefetchAnswer } from './must-refetch-answer.js';
import type { ShapeAnswer } from './shape-answer.js';
import { isDegraded, type ShapeAnswerContext } from './shape-answer-context.js';
import type { ShapeRequest } from './shape-request.js';

/** How long a request waits at start for replication to tell whether stored logs are current. */
const CONTINUITY_WAIT_MS = 5_000;

/**
 * The answer to a valid shape request, whatever transport carries it. Refusals are thrown as
 * coded errors (`SluiceError`), which the transport turns into its error response.
 */
export async function answerShapeRequest(
  parsed: ShapeRequest,
  context: ShapeAnswerContext,
): Promise<ShapeAnswer> {
  // Replication is down: fallback answers (docs/protocol.md §7).
  if (isDegraded(context.status)) return degradedAnswer(parsed, context);
  const shape = await liveShapeFor(parsed, context);
  if (!(shape instanceof Shape)) return shape;
  try {
    return await logAnswer(shape, parsed, context);
  } finally {
    // A held long-poll reads the shape until it ends: the idle time counts from then.
    shape.markRead();
  }
}

/**
 * While live: the shape a request reads, or the 409 that sends its client to the shape's current
 * handle. Refused (503) until replication has told whether stored logs are current.
 */
export async function liveShapeFor(
  parsed: ShapeRequest,
  context: ShapeAnswerContext,
): Promise<Shape | ShapeAnswer> {
  if (!(await context.replication.continuityChecked(CONTINUITY_WAIT_MS))) {
    throw new SluiceError(
      'SLUICE_ERR_NOT_READY',
      'Replication has not been checked yet, so stored shapes may be stale; retry shortly',
    );
  }
  const existing =
    parsed.handle === undefined
      ? context.registry.find(parsed.definition)
      : await context.registry.findHandle(parsed.definition, parsed.handle);
  if (parsed.handle !== undefined && existing?.handle !== parsed.handle) {
    // The handle names data this server no longer has (deleted, rotated, unknown): the client
    // must start again, from the shape's current handle.
    const current = await currentShape(context.registry, parsed.definition);
    return mustRefetchAnswer(current.handle, context.cache);
  }
  const fresh =
    existing?.ready &&
    (parsed.offset !== 'before-all' || (await context.registry.stillCurrent(existing)));
  // A shape whose snapshot is under way is served as its chunks are sealed (logAnswer).
  return fresh ? existing : await context.registry.getOrStart(parsed.definition);
}
