// Raw WebSocket clients of `/v1/ws` for the transport's tests (docs/protocol.md §12): the `ws`
// package's client, every frame the server sends kept in order, with waits for the next one that
// matches, and a tiny materialisation of a subscription's rows for the oracle.
import assert from 'node:assert/strict';
import {
  WS_FRAME_TYPES,
  type WireMessage,
  type WsClientFrame,
  type WsErrorFrame,
  type WsMessagesFrame,
  type WsServerFrame,
  type WsShapeParams,
} from '@sluice/protocol';
import WebSocket from 'ws';
import { snapshotToEnd } from './shape-http-helpers.js';

export interface OpenOptions {
  /** Query string of the upgrade (e.g. `secret`). */
  query?: Record<string, string>;
  headers?: Record<string, string>;
  /** False: the client never answers pings (a dead peer). */
  autoPong?: boolean;
}

/** Resolves with the upgrade's HTTP status when the server refuses it, with the body text. */
export function refusedUpgrade(
  baseUrl: string,
  options: OpenOptions = {},
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(wsUrl(baseUrl, options.query), { headers: options.headers });
    socket.on('open', () => {
      socket.close();
      reject(new Error('the upgrade was accepted'));
    });
    socket.on('unexpected-response', (_request, response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, body, headers: response.headers }),
      );
    });
    socket.on('error', () => {});
  });
}

function wsUrl(baseUrl: string, query: Record<string, string> = {}): string {
  const url = new URL('/v1/ws', baseUrl.replace(/^http/, 'ws'));
  for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value);
  return url.toString();
}

/** A connected client: every server frame in `frames`, in order. */
export class WsTestClient {
  readonly frames: WsServerFrame[] = [];
  /** The close code and reason once closed. */
  closeCode: number | undefined;
  closeReason = '';
  readonly closed: Promise<number>;
  #read = 0;

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data: Buffer) => {
      this.frames.push(JSON.parse(data.toString('utf8')) as WsServerFrame);
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve(code);
      }),
    );
  }

  static open(baseUrl: string, options: OpenOptions = {}): Promise<WsTestClient> {
    const socket = new WebSocket(wsUrl(baseUrl, options.query), {
      headers: options.headers,
      autoPong: options.autoPong ?? true,
    });
    const client = new WsTestClient(socket);
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(client));
      socket.once('unexpected-response', (_request, response) =>
        reject(new Error(`upgrade refused: ${response.statusCode}`)),
      );
      socket.once('error', reject);
    });
  }

  send(frame: WsClientFrame | Record<string, unknown>): void {
    this.socket.send(JSON.stringify(frame));
  }

  sendText(text: string): void {
    this.socket.send(text);
  }

  /**
   * The next frame (after those already taken by `next`) that matches, skipping others; fails
   * after `timeoutMs`.
   */
  async next<T extends WsServerFrame = WsServerFrame>(
    matches: (frame: WsServerFrame) => boolean,
    what: string,
    timeoutMs = 15_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.#read < this.frames.length) {
        const frame = this.frames[this.#read++]!;
        if (matches(frame)) return frame as T;
      }
      if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
      if (this.closeCode !== undefined) assert.fail(`closed (${this.closeCode}) before ${what}`);
      await sleep(10);
    }
  }

  nextMessages(id: string, timeoutMs?: number): Promise<WsMessagesFrame> {
    return this.next(
      (f) => f.type === WS_FRAME_TYPES.messages && f.id === id,
      `messages for ${id}`,
      timeoutMs,
    );
  }

  nextError(id: string | undefined, timeoutMs?: number): Promise<WsErrorFrame> {
    return this.next(
      (f) => f.type === WS_FRAME_TYPES.error && f.id === id,
      `an error frame for ${id}`,
      timeoutMs,
    );
  }

  close(): void {
    this.socket.close();
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function waitFor(what: string, done: () => boolean, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

type TextRow = Record<string, string | null>;

/**
 * A subscription's rows, as the official client materialises them: inserts set the row, updates
 * merge into it, deletes remove it; keyed by the messages' `key`.
 */
export class RowsByKey {
  readonly rows = new Map<string, TextRow>();

  apply(messages: readonly WireMessage[]): void {
    for (const message of messages) {
      if (!('key' in message)) continue;
      const { operation } = message.headers;
      if (operation === 'delete') this.rows.delete(message.key);
      else if (operation === 'insert') this.rows.set(message.key, { ...message.value });
      else this.rows.set(message.key, { ...this.rows.get(message.key), ...message.value });
    }
  }
}

/**
 * Reads a shape over HTTP from `-1` to up-to-date (where a subscription starts), returning its
 * handle, offset and rows.
 */
export async function syncOverHttp(
  shapeUrl: string,
  params: Record<string, string>,
): Promise<{ handle: string; offset: string; rows: RowsByKey; schema: unknown }> {
  const replies = await snapshotToEnd(shapeUrl, params);
  const rows = new RowsByKey();
  for (const reply of replies) rows.apply(JSON.parse(reply.text) as WireMessage[]);
  const last = replies.at(-1)!;
  return {
    handle: last.headers.get('electric-handle') ?? '',
    offset: last.headers.get('electric-offset') ?? '',
    rows,
    schema: JSON.parse(replies[0]!.headers.get('electric-schema') ?? 'null'),
  };
}

export function subscribeFrame(
  id: string,
  params: WsShapeParams,
  handle: string | undefined,
  offset: string,
): WsClientFrame {
  return {
    type: WS_FRAME_TYPES.subscribe,
    id,
    params,
    ...(handle === undefined ? {} : { handle }),
    offset,
  };
}

export const isUpToDate = (frame: WsMessagesFrame): boolean =>
  frame.messages.at(-1)?.headers !== undefined &&
  'control' in frame.messages.at(-1)!.headers &&
  (frame.messages.at(-1)!.headers as { control: string }).control === 'up-to-date';

export const changesOf = (frame: WsMessagesFrame): WireMessage[] =>
  frame.messages.filter((m) => 'key' in m);
