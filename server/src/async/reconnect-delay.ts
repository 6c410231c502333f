/**
 * The wait before reconnect attempt `attempt` (0-based): exponential from a floor to a cap, with
 * ±25 % jitter so that servers cut off together do not come back together. It never ends in
 * "give up": the cap bounds the rate of attempts forever (docs/architecture.md invariant 5).
 */
export function reconnectDelay(
  attempt: number,
  minMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(base * (0.75 + random() * 0.5));
}
