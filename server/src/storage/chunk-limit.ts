/** The size at which a log's first chunk is sealed. */
const FIRST_CHUNK_BYTES = 64 * 1024;

/** Each chunk after the first may hold this many times more than the one before. */
const GROWTH = 4;

/** The limits of chunks 1 to 9 (asked for once per appended row); 4^8 × 64 kB is 4 GB. */
const LIMITS = Array.from({ length: 9 }, (_, i) => FIRST_CHUNK_BYTES * GROWTH ** i);

/**
 * The size at which chunk `number` (the first is 1) is sealed: 64 kB, then four times more per
 * chunk up to `chunkBytes` (SLUICE_CHUNK_BYTES). A response never crosses a chunk and a chunk is
 * served once sealed, so a large snapshot's first rows go out after 64 kB are built rather than
 * a whole `chunkBytes`, at the cost of a few more requests (64 kB, 256 kB, 1 MB, 4 MB, then
 * `chunkBytes` each with the default 10 MB). Every backend seals alike: the limit depends on the
 * chunk's number only, so boundaries are the same for every reader, whenever it reads.
 */
export function chunkLimit(number: number, chunkBytes: number): number {
  return Math.min(chunkBytes, LIMITS[Math.min(Math.max(0, number - 1), LIMITS.length - 1)]!);
}
