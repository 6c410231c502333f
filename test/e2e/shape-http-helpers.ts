// Helpers of the raw-HTTP shape tests (shape-http*.test.ts): requests, bodies, the expected
// cache-control values and CORS checks of docs/protocol.md §1 and §5.
import assert from 'node:assert/strict';

export const ITEMS_SQL = 'CREATE TABLE items (id int PRIMARY KEY, title text);';

/** docs/protocol.md §5 with the default ages. */
export const CACHE = {
  initial: 'public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746',
  catchUp: 'public, max-age=60, stale-while-revalidate=300',
  live: 'public, max-age=5, stale-while-revalidate=5',
  mustRefetch: 'public, max-age=60, must-revalidate',
};

/** Every header a browser client must be able to read (docs/protocol.md §1). */
export const EXPOSED = [
  'electric-handle',
  'electric-offset',
  'electric-schema',
  'electric-cursor',
  'electric-up-to-date',
  'electric-fallback-mode',
  'electric-has-data',
  'retry-after',
];

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: () => unknown;
}

export interface WireMessage {
  key?: string;
  value?: Record<string, string | null>;
  headers: Record<string, unknown> & { control?: string; operation?: string };
}

export async function toReply(response: Response): Promise<Reply> {
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    text,
    json: () => JSON.parse(text) as unknown,
  };
}

export async function get(
  url: string,
  params: Record<string, string>,
  init: RequestInit = {},
): Promise<Reply> {
  return toReply(await fetch(`${url}?${new URLSearchParams(params).toString()}`, init));
}

export function parseBody(reply: Reply): WireMessage[] {
  const body = reply.json();
  assert.ok(Array.isArray(body), `a JSON array body, got ${reply.text.slice(0, 200)}`);
  return body as WireMessage[];
}

export function assertCors(reply: Pick<Reply, 'headers'>, what = ''): void {
  assert.ok(reply.headers.get('access-control-allow-origin'), `allow-origin ${what}`);
  const exposed = (reply.headers.get('access-control-expose-headers') ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase());
  for (const header of EXPOSED) assert.ok(exposed.includes(header), `exposes ${header} ${what}`);
}

/** Reads a shape from offset -1 until up-to-date; returns every response in order. */
export async function snapshotToEnd(url: string, params: Record<string, string>): Promise<Reply[]> {
  const replies: Reply[] = [];
  let offset = '-1';
  let handle: string | undefined;
  for (let i = 0; i < 10_000; i++) {
    const reply = await get(url, { ...params, offset, ...(handle ? { handle } : {}) });
    assert.equal(reply.status, 200, reply.text);
    replies.push(reply);
    if (reply.headers.has('electric-up-to-date')) return replies;
    offset = reply.headers.get('electric-offset') ?? '';
    handle = reply.headers.get('electric-handle') ?? '';
  }
  throw new Error('never up to date');
}
