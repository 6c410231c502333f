// Reading /v1/status (docs/protocol.md §7) and waiting for a state.
import assert from 'node:assert/strict';
import type { StatusDocument } from '@sluice/protocol';

export type StatusBody = StatusDocument;

export async function fetchStatus(baseUrl: string): Promise<StatusBody> {
  const response = await fetch(`${baseUrl}/v1/status`);
  assert.equal(response.status, 200, '/v1/status answers 200');
  return (await response.json()) as StatusBody;
}

/**
 * Polls `/v1/status` until its status is one of `states`; returns that body and how long it
 * took. Fails after `timeoutMs` with the last body seen.
 */
export async function waitForStatus(
  baseUrl: string,
  states: StatusBody['status'] | StatusBody['status'][],
  timeoutMs = 30_000,
): Promise<{ body: StatusBody; elapsedMs: number }> {
  const wanted = Array.isArray(states) ? states : [states];
  const started = Date.now();
  let body: StatusBody | undefined;
  for (;;) {
    body = await fetchStatus(baseUrl).catch(() => undefined);
    if (body && wanted.includes(body.status)) return { body, elapsedMs: Date.now() - started };
    if (Date.now() - started > timeoutMs) {
      assert.fail(
        `status never became ${wanted.join('/')} in ${timeoutMs} ms: ${JSON.stringify(body)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
