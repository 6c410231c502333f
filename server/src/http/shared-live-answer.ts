import { compareLogOffsets, type LogOffset } from '@sluice/protocol';
import { SingleFlightCache } from '../async/single-flight-cache.js';
import type { Shape } from '../shapes/shape.js';

/**
 * A live answer every request at one position of a shape gets alike: its JSON body as one
 * Buffer and its headers, built once. What differs per request (the cursor, a 304) is the
 * caller's.
 */
export interface SharedLiveAnswer {
  headers: Readonly<Record<string, string>>;
  body: Buffer;
}

/** What a shared answer depends on besides the shape: when any of it moves, it is built anew. */
export interface SharedLiveKey {
  /** The request's `offset` as sent: the etag names it. */
  offsetText: string;
  durable: LogOffset | undefined;
  lastSeenLsn: bigint;
  degraded: boolean;
}

/**
 * The live answer of each shape being sent, shared by every request that asks for it while
 * nothing it depends on has moved. A flush wakes every held long-poll of a shape at once (their
 * continuations all run before the answer's read can resolve), and they mostly wait at the
 * position the previous flush left them: one log read, one join and one encoding serve them all.
 */
const lastAnswers = new SingleFlightCache<Shape, SharedLiveKey, SharedLiveAnswer>(sameKey);

/** The shared answer for `key`, built by `build` unless the last one still holds. */
export function sharedLiveAnswer(
  shape: Shape,
  key: SharedLiveKey,
  build: () => Promise<SharedLiveAnswer>,
): Promise<SharedLiveAnswer> {
  return lastAnswers.get(shape, key, build);
}

function sameKey(a: SharedLiveKey, b: SharedLiveKey): boolean {
  return (
    a.offsetText === b.offsetText &&
    a.lastSeenLsn === b.lastSeenLsn &&
    a.degraded === b.degraded &&
    sameOffset(a.durable, b.durable)
  );
}

function sameOffset(a: LogOffset | undefined, b: LogOffset | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return compareLogOffsets(a, b) === 0;
}
