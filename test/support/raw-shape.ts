// Raw HTTP access to /v1/shape, without the official client: single requests, a read to the end of
// a shape, and a follower that walks offset/handle/cursor itself (docs/protocol.md §3) and applies the
// messages into a Map the way the official Shape does, parsing values with `electric-schema`.
import type { Row } from '@electric-sql/client';
import { ChangeAudit } from './change-audit.js';
import { parseColumn } from './shape-oracle.js';

/** Shape parameters as they go on the URL (`columns` already comma-joined). */
export type RawShapeParams = Record<string, string> & { table: string };

export interface RawReply {
  status: number;
  headers: Headers;
  text: string;
}

interface WireMessage {
  key?: string;
  value?: Record<string, string | null>;
  headers: { operation?: string; control?: string };
}

interface SchemaColumn {
  type: string;
  dims?: number;
}

const MUST_REFETCH_BODY = '[{"headers":{"control":"must-refetch"}}]';

/** One GET of `${baseUrl}/v1/shape` with the given query parameters. */
export async function rawRequest(
  baseUrl: string,
  params: Record<string, string>,
  signal?: AbortSignal,
): Promise<RawReply> {
  const response = await fetch(`${baseUrl}/v1/shape?${new URLSearchParams(params).toString()}`, {
    signal,
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** Reads a shape from `-1` to `up-to-date` (non-live); returns where a client would resume. */
export async function readToEnd(
  baseUrl: string,
  params: RawShapeParams,
): Promise<{ handle: string; offset: string }> {
  let offset = '-1';
  let handle: string | undefined;
  for (let i = 0; i < 10_000; i++) {
    const reply = await rawRequest(baseUrl, { ...params, offset, ...(handle ? { handle } : {}) });
    if (reply.status !== 200) throw new Error(`GET ${offset}: ${reply.status} ${reply.text}`);
    handle = reply.headers.get('electric-handle') ?? '';
    offset = reply.headers.get('electric-offset') ?? '';
    if (reply.headers.has('electric-up-to-date')) return { handle, offset };
  }
  throw new Error('never up to date');
}

/** True when a reply is the 409 of docs/protocol.md §3 naming a handle other than `oldHandle`. */
export function isRotation(reply: RawReply, oldHandle: string): boolean {
  const next = reply.headers.get('electric-handle');
  return (
    reply.status === 409 &&
    reply.text === MUST_REFETCH_BODY &&
    next !== null &&
    next !== '' &&
    next !== oldHandle
  );
}

/**
 * Follows a shape with plain fetch: `-1`, catch-up requests until `up-to-date`, then live
 * long-polls with the last cursor. A 409 clears the rows and restarts from `-1` with the handle
 * it names; a 5xx or a network error is retried. Anything else stops the follower (`error`).
 */
export class RawFollower {
  readonly rows = new Map<string, Row>();
  /** Exactly-once check of every change delivered (reset by a 409). */
  readonly audit = new ChangeAudit();
  mustRefetches = 0;
  upToDates = 0;
  requests = 0;
  error: Error | undefined;
  readonly #abort = new AbortController();
  readonly #done: Promise<void>;
  #schema: Record<string, SchemaColumn> | undefined;

  constructor(
    private readonly baseUrl: string,
    private readonly params: RawShapeParams,
  ) {
    this.#done = this.#run().catch((error: unknown) => {
      if (!this.#abort.signal.aborted) this.error = error as Error;
    });
  }

  async close(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }

  async #run(): Promise<void> {
    let offset = '-1';
    let handle: string | undefined;
    let cursor: string | undefined;
    let live = false;
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      const query: Record<string, string> = { ...this.params, offset };
      if (handle !== undefined) query.handle = handle;
      if (live) {
        query.live = 'true';
        query.cursor = cursor ?? '';
      }
      let reply: RawReply;
      try {
        this.requests++;
        reply = await rawRequest(this.baseUrl, query, signal);
      } catch {
        if (signal.aborted) return;
        await pause(200);
        continue;
      }
      if (reply.status === 409) {
        this.mustRefetches++;
        this.rows.clear();
        this.audit.reset();
        this.#schema = undefined;
        handle = reply.headers.get('electric-handle') ?? undefined;
        offset = '-1';
        live = false;
        continue;
      }
      if (reply.status >= 500) {
        await pause(200);
        continue;
      }
      if (reply.status !== 200) {
        throw new Error(`${reply.status} for ${JSON.stringify(query)}: ${reply.text}`);
      }
      handle = reply.headers.get('electric-handle') ?? handle;
      offset = reply.headers.get('electric-offset') ?? offset;
      cursor = reply.headers.get('electric-cursor') ?? cursor;
      const schema = reply.headers.get('electric-schema');
      if (schema !== null && this.#schema === undefined) {
        this.#schema = JSON.parse(schema) as Record<string, SchemaColumn>;
      }
      const messages = JSON.parse(reply.text) as WireMessage[];
      this.audit.apply(messages);
      for (const message of messages) this.#apply(message);
      if (messages.at(-1)?.headers.control === 'up-to-date') {
        this.upToDates++;
        live = true;
      }
    }
  }

  #apply(message: WireMessage): void {
    const { key, value, headers } = message;
    if (key === undefined || value === undefined) return;
    const parsed = this.#parse(value);
    if (headers.operation === 'insert') {
      this.rows.set(key, parsed);
    } else if (headers.operation === 'update') {
      this.rows.set(key, { ...this.rows.get(key), ...parsed });
    } else if (headers.operation === 'delete') {
      this.rows.delete(key);
    }
  }

  #parse(value: Record<string, string | null>): Row {
    const row: Row = {};
    for (const [name, text] of Object.entries(value)) {
      const column = this.#schema?.[name];
      row[name] = column
        ? parseColumn({ type: column.type, isArray: (column.dims ?? 0) > 0 }, text)
        : text;
    }
    return row;
  }
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
