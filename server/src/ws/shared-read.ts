import { formatLogOffset, type LogOffset } from '@sluice/protocol';
import { SingleFlightCache } from '../async/single-flight-cache.js';
import type { Shape } from '../shapes/shape.js';

/** One read of a shape's log, its messages already joined into the inside of a JSON array. */
export interface JoinedRead {
  /** The entries' JSON texts joined with commas ('' when there are none). */
  messages: string;
  last: LogOffset;
  reachedEnd: boolean;
}

/**
 * The read of each shape being sent, shared by every subscription that reads the same position
 * while the log's durable end has not moved (the key: both as text): the subscribers of one
 * shape, woken by one flush, all read from where the previous flush left them, so one read and
 * one join serve them all.
 */
const lastReads = new SingleFlightCache<Shape, string, JoinedRead>((a, b) => a === b);

/** The entries after `position` (at most one chunk, as a long-poll reads them). */
export function sharedRead(shape: Shape, position: LogOffset): Promise<JoinedRead> {
  const durable = shape.log.durableOffset;
  const key = `${formatLogOffset(position)} ${durable === undefined ? '' : formatLogOffset(durable)}`;
  return lastReads.get(shape, key, () =>
    shape.log.read(position).then((result) => {
      // Only called when entries exist after the position: none found would loop for ever.
      if (result.lastOffset === undefined) throw new Error('a read after entries found none');
      return {
        messages: result.entries.join(','),
        last: result.lastOffset,
        reachedEnd: result.reachedEnd,
      };
    }),
  );
}
