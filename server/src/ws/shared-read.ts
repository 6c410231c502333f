import { compareLogOffsets, formatLogOffset, type LogOffset } from '@sluice/protocol';
import type { Shape } from '../shapes/shape.js';

/** One read of a shape's log, its messages already joined into the inside of a JSON array. */
export interface JoinedRead {
  /** The entries' JSON texts joined with commas ('' when there are none). */
  messages: string;
  last: LogOffset;
  reachedEnd: boolean;
}

interface LastRead {
  position: string;
  durable: LogOffset | undefined;
  read: Promise<JoinedRead>;
}

/**
 * The read of each shape being sent, shared by every subscription that reads the same position
 * while the log's durable end has not moved: the subscribers of one shape, woken by one flush,
 * all read from where the previous flush left them, so one read and one join serve them all. One
 * read per shape at most, and only until the turn of the event loop after it resolves: an idle
 * shape keeps none (a read holds up to a chunk).
 */
const lastReads = new WeakMap<Shape, LastRead>();

/** The entries after `position` (at most one chunk, as a long-poll reads them). */
export function sharedRead(shape: Shape, position: LogOffset): Promise<JoinedRead> {
  const key = formatLogOffset(position);
  const durable = shape.log.durableOffset;
  const cached = lastReads.get(shape);
  if (cached && cached.position === key && sameOffset(cached.durable, durable)) return cached.read;
  const read = shape.log.read(position).then((result) => {
    // Only called when entries exist after the position: none found would loop for ever.
    if (result.lastOffset === undefined) throw new Error('a read after entries found none');
    return {
      messages: result.entries.join(','),
      last: result.lastOffset,
      reachedEnd: result.reachedEnd,
    };
  });
  const entry = { position: key, durable, read };
  lastReads.set(shape, entry);
  const forget = () => {
    if (lastReads.get(shape) === entry) lastReads.delete(shape);
  };
  // A failed read (the shape deleted meanwhile) is not kept for the next caller either.
  read.then(() => setImmediate(forget), forget);
  return read;
}

function sameOffset(a: LogOffset | undefined, b: LogOffset | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return compareLogOffsets(a, b) === 0;
}
