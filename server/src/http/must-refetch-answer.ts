import { CONTROL, HEADERS, type MustRefetchMessage } from '@sluice/protocol';
import { cacheControl, type CacheAges } from './cache-policy.js';
import type { ShapeAnswer } from './shape-answer.js';

const MUST_REFETCH: MustRefetchMessage = { headers: { control: CONTROL.mustRefetch } };
const BODY = JSON.stringify([MUST_REFETCH]);

/**
 * 409 must-refetch naming the handle to start again from (docs/protocol.md §3). Sending a client
 * to a fallback handle is itself a fallback answer: marked so, and cached as briefly.
 */
export function mustRefetchAnswer(
  handle: string,
  ages: CacheAges,
  { fallbackMode = false } = {},
): ShapeAnswer {
  const headers: Record<string, string> = {
    [HEADERS.handle]: handle,
    [HEADERS.cacheControl]: cacheControl(fallbackMode ? 'fallback' : 'must-refetch', ages),
  };
  if (fallbackMode) headers[HEADERS.fallbackMode] = 'true';
  return { status: 409, headers, body: BODY };
}
