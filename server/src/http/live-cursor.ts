/** Cursors count seconds from Electric's epoch, so Sluice's and Electric's interleave sanely. */
const CURSOR_EPOCH_MS = Date.UTC(2024, 9, 9);

/**
 * The `electric-cursor` of a live response (docs/protocol.md §5): the end of the current long-poll
 * window, so every client polling within one window sends the same next URL and a CDN collapses
 * them. If that would not move past the client's cursor, jump ahead by a random 1..3600 s so the
 * next URL is new (a cached response must never be replayed to the same client).
 */
export function nextLiveCursor(
  longPollTimeoutMs: number,
  requestCursor: string | undefined,
  now = Date.now(),
): string {
  const windowS = Math.max(1, Math.round(longPollTimeoutMs / 1000));
  const nowS = Math.floor((now - CURSOR_EPOCH_MS) / 1000);
  const windowEnd = (Math.floor(nowS / windowS) + 1) * windowS;
  const previous =
    requestCursor !== undefined && /^\d+$/.test(requestCursor) ? Number(requestCursor) : 0;
  if (windowEnd > previous) return String(windowEnd);
  return String(previous + 1 + Math.floor(Math.random() * 3600));
}
