import { SluiceError } from '../errors/sluice-error.js';
import { isFallbackHandle, newFallbackHandle } from '../shapes/fallback-queries.js';
import type { Shape } from '../shapes/shape.js';
import { chooseDegradedAnswer, type DegradedChoice } from './degraded-choice.js';
import { mustRefetchAnswer } from './must-refetch-answer.js';
import type { ShapeAnswer } from './shape-answer.js';
import type { ShapeAnswerContext } from './shape-answer-context.js';
import type { ShapeRequest } from './shape-request.js';

/** What a request gets while replication is down, and the shape the registry holds for it. */
export interface DegradedDecision {
  choice: DegradedChoice;
  held: Shape | undefined;
}

/**
 * The facts `chooseDegradedAnswer` decides on, read for this request. Long-polls, SSE streams and
 * subset snapshots all decide this way, so a client is sent to the same place by each of them.
 */
export async function decideDegraded(
  parsed: ShapeRequest,
  context: ShapeAnswerContext,
): Promise<DegradedDecision> {
  const storageDown = context.status.inputs.storage === 'down';
  // A storage that does not answer serves no log, and may not have let the registry load yet.
  const held = storageDown ? undefined : context.registry.find(parsed.definition);
  const choice = chooseDegradedAnswer(parsed, {
    fallbackHandle: parsed.handle !== undefined && isFallbackHandle(parsed.handle),
    held,
    continuityChecked: await context.replication.continuityChecked(0),
    databaseDown: context.status.current().state === 'unavailable',
    storageDown,
  });
  return { choice, held };
}

/** `refetch-fallback`: start again from a new fallback handle. */
export function refetchFallbackAnswer(
  parsed: ShapeRequest,
  context: ShapeAnswerContext,
): ShapeAnswer {
  return mustRefetchAnswer(newFallbackHandle(parsed.definition), context.cache, {
    fallbackMode: true,
  });
}

/** `not-ready`: stored logs cannot be trusted yet, and fallback rows are not for this request. */
export function notReadyWhileDegraded(): SluiceError {
  return new SluiceError(
    'SLUICE_ERR_NOT_READY',
    'Replication is down and stored shapes cannot be checked yet; retry shortly',
  );
}
