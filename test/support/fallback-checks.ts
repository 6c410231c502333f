// Checks for fallback mode (docs/protocol.md §7): comparing a fallback answer with SELECT in
// Postgres; reading /v1/status and waiting for a state come from server-status.ts.
import assert from 'node:assert/strict';
import type { Row } from '@electric-sql/client';
import type { TestDatabase } from '@sluice/harness';
import { rawRequest, type RawReply, type RawShapeParams } from './raw-shape.js';
import { parseColumn, postgresRows, sortRows, type ShapeSpec } from './shape-oracle.js';

export { fetchStatus, waitForStatus, type StatusBody } from './server-status.js';

interface WireMessage {
  value?: Record<string, string | null>;
  headers: { operation?: string; control?: string };
}

/**
 * GETs `offset=-1` in fallback mode and checks the answer: 200 with `electric-fallback-mode`,
 * a short cache lifetime, every row as an insert then `up-to-date`, and rows equal to SELECT in
 * Postgres now (callers keep writers still meanwhile). Returns the fallback handle.
 */
export async function assertFallbackSnapshot(
  db: TestDatabase,
  baseUrl: string,
  params: RawShapeParams,
  spec: ShapeSpec,
): Promise<string> {
  const reply = await rawRequest(baseUrl, { ...params, offset: '-1' });
  return assertFallbackReply(db, reply, spec);
}

/**
 * `assertFallbackSnapshot` for a reply already received (a request started before a fault):
 * the same checks, rows compared with SELECT in `db` now. Returns the fallback handle.
 */
export async function assertFallbackReply(
  db: TestDatabase,
  reply: RawReply,
  spec: ShapeSpec,
): Promise<string> {
  const { rows, keys } = fallbackReplyRows(reply);
  const expected = await postgresRows(db, spec);
  assert.deepEqual(sortRows(rows, keys), expected, 'fallback rows equal SELECT');
  return reply.headers.get('electric-handle') ?? '';
}

/**
 * The rows of a fallback snapshot reply, parsed the way the official client parses them, after
 * checking its form (200, `electric-fallback-mode`, a short cache lifetime, inserts then
 * `up-to-date`); `keys` are the primary-key columns `electric-schema` names.
 */
export function fallbackReplyRows(reply: RawReply): { rows: Row[]; keys: string[] } {
  assert.equal(reply.status, 200, `fallback snapshot: ${reply.text}`);
  assert.equal(reply.headers.get('electric-fallback-mode'), 'true', 'fallback header');
  assert.match(reply.headers.get('cache-control') ?? '', /^public, max-age=\d+$/);
  const schema = JSON.parse(reply.headers.get('electric-schema') ?? '{}') as Record<
    string,
    { type: string; dims?: number }
  >;
  const messages = JSON.parse(reply.text) as WireMessage[];
  assert.equal(messages.at(-1)?.headers.control, 'up-to-date', 'ends with up-to-date');
  const rows: Row[] = messages
    .filter((message) => message.headers.operation !== undefined)
    .map((message) => {
      assert.equal(message.headers.operation, 'insert', 'fallback rows are inserts');
      const row: Row = {};
      for (const [name, text] of Object.entries(message.value ?? {})) {
        const column = schema[name];
        row[name] = column
          ? parseColumn({ type: column.type, isArray: (column.dims ?? 0) > 0 }, text)
          : text;
      }
      return row;
    });
  const keys = Object.entries(schema)
    .filter(([, column]) => (column as { pk_index?: number }).pk_index !== undefined)
    .map(([name]) => name);
  return { rows, keys };
}
