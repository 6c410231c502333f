import { compareLogOffsets, type LogOffset } from '@sluice/protocol';
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

interface Entry {
  key: SharedLiveKey;
  answer: Promise<SharedLiveAnswer>;
}

/**
 * The live answer of each shape being sent, shared by every request that asks for it while
 * nothing it depends on has moved. A flush wakes every held long-poll of a shape at once (their
 * continuations all run before the answer's read can resolve), and they mostly wait at the
 * position the previous flush left them: one log read, one join and one encoding serve them all.
 * One answer per shape at most, and only until the turn of the event loop after it is built: an
 * idle shape keeps none (a read holds up to a chunk), and a request that comes later builds anew.
 */
const lastAnswers = new WeakMap<Shape, Entry>();

/** The shared answer for `key`, built by `build` unless the last one still holds. */
export function sharedLiveAnswer(
  shape: Shape,
  key: SharedLiveKey,
  build: () => Promise<SharedLiveAnswer>,
): Promise<SharedLiveAnswer> {
  const cached = lastAnswers.get(shape);
  if (cached && sameKey(cached.key, key)) return cached.answer;
  const answer = build();
  const entry = { key, answer };
  lastAnswers.set(shape, entry);
  const forget = () => {
    if (lastAnswers.get(shape) === entry) lastAnswers.delete(shape);
  };
  // Every request woken with the others holds the promise by then; a failed build (the shape
  // deleted or closed meanwhile) is not kept for the next caller either.
  answer.then(() => setImmediate(forget), forget);
  return answer;
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
