import type { GeneratorFn } from 'cockatiel';
import { reconnectDelay } from '../async/reconnect-delay.js';

/**
 * cockatiel backoff generator for query retries: the same schedule as replication reconnects
 * (doubling from `initialDelay` up to `maxDelay`, then ±25 % jitter so that requests failed by
 * one outage do not retry in lockstep). The state is the retry number; each execution of a
 * retry policy starts a fresh backoff, so the schedule resets after every query.
 */
export const jitteredBackoff: GeneratorFn<number> = (attempt = 0, options) => [
  reconnectDelay(attempt, options.initialDelay, options.maxDelay),
  attempt + 1,
];
