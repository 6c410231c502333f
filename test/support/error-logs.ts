import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';

/**
 * Collects the error-level lines (pino level ≥ 50) of an app's logger, request loggers included:
 * they are pino children writing to the stream their root holds, which is wrapped here. Tests of
 * bad input assert it stays empty: a refusal is never a server error.
 */
export function captureErrorLogs(app: FastifyInstance): string[] {
  const lines: string[] = [];
  let holder: object | null = app.log;
  while (holder) {
    const key = Object.getOwnPropertySymbols(holder).find((s) => s.description === 'pino.stream');
    if (key) {
      const target = holder as Record<symbol, { write(line: string): void }>;
      const stream = target[key]!;
      target[key] = {
        write(line: string) {
          if ((JSON.parse(line) as { level: number }).level >= 50) lines.push(line);
          stream.write(line);
        },
      };
      return lines;
    }
    holder = Object.getPrototypeOf(holder) as object | null;
  }
  throw new Error('the app logger has no pino stream');
}

/**
 * Wraps a test body so that it fails if the server logged anything at error level while it ran:
 * refusing bad or excess requests is never a server error.
 */
export function withoutErrorLogs<F extends { sluice: { app: FastifyInstance } }>(
  body: (fixture: F) => Promise<void>,
): (fixture: F) => Promise<void> {
  return async (fixture) => {
    const errorLogs = captureErrorLogs(fixture.sluice.app);
    await body(fixture);
    assert.deepEqual(errorLogs, [], 'nothing logged at error level');
  };
}
