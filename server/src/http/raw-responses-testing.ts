import assert from 'node:assert/strict';
import type { Socket } from 'node:net';

/** One HTTP/1.1 response read off a raw socket: its head's lines and its body. */
export interface RawResponse {
  head: string[];
  body: Buffer;
  /** The response's bytes, head and body, as they came. */
  bytes: Buffer;
}

/**
 * Reads whole responses off a keep-alive `socket` as they arrive (each with a content-length):
 * each call resolves with the next one.
 */
export function rawResponses(socket: Socket): () => Promise<RawResponse> {
  let buffered = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    wake?.();
  });
  return async () => {
    for (;;) {
      const headEnd = buffered.indexOf('\r\n\r\n');
      if (headEnd !== -1) {
        const head = buffered.toString('latin1', 0, headEnd).split('\r\n');
        const length = Number(
          head.find((line) => /^content-length:/i.test(line))?.split(':')[1] ?? NaN,
        );
        assert.ok(Number.isInteger(length), `a content-length in ${head.join(' | ')}`);
        const end = headEnd + 4 + length;
        if (buffered.length >= end) {
          const bytes = buffered.subarray(0, end);
          buffered = buffered.subarray(end);
          return { head, body: bytes.subarray(headEnd + 4), bytes };
        }
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
  };
}
