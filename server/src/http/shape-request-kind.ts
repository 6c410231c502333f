import { HEADERS } from '@sluice/protocol';
import type { RequestKind } from '../status/sluice-metrics.js';
import type { ShapeAnswer } from './shape-answer.js';
import type { ShapeRequest } from './shape-request.js';
import type { SseStream } from './sse-stream.js';

/**
 * The kind of a valid shape request (`sluice_http_*`, docs/operations.md): from the request
 * alone, then from its answer once there is one (a refusal keeps the request's kind).
 */
export function shapeRequestKind(
  parsed: Pick<ShapeRequest, 'live' | 'sse' | 'offset'>,
  answer?: ShapeAnswer | SseStream,
): RequestKind {
  if (answer && 'status' in answer && answer.status === 409) return 'must-refetch';
  if (answer?.headers[HEADERS.fallbackMode] !== undefined) return 'fallback';
  if (parsed.live) return parsed.sse ? 'live-sse' : 'live';
  if (parsed.offset === 'before-all') return 'initial';
  return parsed.offset === 'now' ? 'now' : 'catch-up';
}
