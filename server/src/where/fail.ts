import { shapeInvalid } from '../errors/sluice-error.js';

/**
 * Refuses the where clause being compiled: a 400 listing `message` under the `where` parameter.
 * Messages name the construct refused, in Postgres' own words where Postgres refuses it too, so
 * that a client sees the same reason either server would give.
 */
export function fail(message: string): never {
  throw shapeInvalid('where', message);
}
