import type http from 'node:http';
import net from 'node:net';
import { HEADERS, PATHS } from '@sluice/protocol';
import { expectStatus, header, httpRequest } from './bench-support.js';
import { RowKeys } from './row-keys.js';

/**
 * One long-poll client: `live=true` requests in a loop on one keep-alive connection, each sent
 * as soon as the previous response arrived, remembering when each row (by `value.id`) arrived.
 */
export interface LongPoller {
  /** Row id → performance.now() when the response holding it had fully arrived. */
  readonly received: Map<number, number>;
  /** Set when the client failed (bad status, lost connection); the bench then stops. */
  readonly failure: Error | undefined;
  start(): Promise<void>;
  stop(): void;
}

export type LongPollerKind = 'raw' | 'http';

/**
 * `raw` (default): a minimal HTTP/1.1 client on a `net.Socket`. It costs the bench process a
 * fraction of what node:http does per response, which matters when 1,000 clients share two cores
 * with the server and Postgres. `http`: node:http with a keep-alive agent, for comparison.
 */
export function createLongPoller(
  kind: LongPollerKind,
  baseUrl: string,
  table: string,
  handle: string,
  offset: string,
  agent: http.Agent,
): LongPoller {
  const pathAndQuery = `${PATHS.shape}?table=${table}&handle=${handle}`;
  return kind === 'raw'
    ? new RawLongPoller(new URL(baseUrl), pathAndQuery, new RowKeys(table), offset)
    : new HttpLongPoller(`${baseUrl}${pathAndQuery}`, offset, agent);
}

function recordRows(received: Map<number, number>, body: Buffer, at: number): void {
  const messages = JSON.parse(body.toString()) as { value?: { id?: string } }[];
  for (const message of messages) {
    const id = message.value?.id;
    if (id !== undefined) received.set(Number(id), at);
  }
}

class HttpLongPoller implements LongPoller {
  readonly received = new Map<number, number>();
  failure: Error | undefined;
  #stopped = false;
  #offset: string;
  #cursor: string | undefined;

  constructor(
    private readonly url: string,
    offset: string,
    private readonly agent: http.Agent,
  ) {
    this.#offset = offset;
  }

  start(): Promise<void> {
    this.#loop().catch((error: unknown) => {
      if (!this.#stopped) this.failure = error as Error;
    });
    return Promise.resolve();
  }

  stop(): void {
    this.#stopped = true;
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      const cursor = this.#cursor === undefined ? '' : `&cursor=${this.#cursor}`;
      const response = await httpRequest(`${this.url}&offset=${this.#offset}&live=true${cursor}`, {
        agent: this.agent,
      });
      if (this.#stopped) return;
      expectStatus(response, 200, 'live request');
      this.#offset = header(response, HEADERS.offset) ?? this.#offset;
      this.#cursor = header(response, HEADERS.cursor) ?? this.#cursor;
      recordRows(this.received, response.body, response.receivedAt);
    }
  }
}

const HEAD_END = Buffer.from('\r\n\r\n');
/** What every raw client reads into (`onread`): each read is copied out before the next. */
const READ_BUFFER = Buffer.alloc(64 * 1024);

/**
 * Raw clients with responses read and not parsed yet. They are parsed, and their next long-polls
 * sent, once the bench process has read what every socket had for it: one `setImmediate` (after
 * the event loop's poll phase) for them all.
 */
let unparsed: RawLongPoller[] = [];

function parseLater(poller: RawLongPoller): void {
  unparsed.push(poller);
  if (unparsed.length === 1) setImmediate(parseUnparsed);
}

function parseUnparsed(): void {
  const pollers = unparsed;
  unparsed = [];
  for (const poller of pollers) poller.parseArrived();
}

/** The value of header `name` (lower case) in a head already in lower case, or undefined. */
function headerIn(head: string, name: string): string | undefined {
  const at = head.indexOf(`\r\n${name}:`);
  if (at === -1) return undefined;
  const from = at + name.length + 3;
  const end = head.indexOf('\r\n', from);
  return head.slice(from, end === -1 ? head.length : end).trim();
}

class RawLongPoller implements LongPoller {
  readonly received = new Map<number, number>();
  failure: Error | undefined;
  #stopped = false;
  #offset: string;
  #cursor: string | undefined;
  #socket: net.Socket | undefined;
  #buffer: Buffer = Buffer.alloc(0);
  /** Chunks read and not parsed yet, with when each arrived. */
  #arrived: [Buffer, number][] = [];
  readonly #host: string;

  constructor(
    private readonly url: URL,
    private readonly pathAndQuery: string,
    private readonly rowKeys: RowKeys,
    offset: string,
  ) {
    this.#offset = offset;
    this.#host = url.host;
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({
        host: this.url.hostname,
        port: Number(this.url.port),
        // Read without the stream machinery: the bytes are stamped and copied, nothing else.
        onread: { buffer: READ_BUFFER, callback: (length, buffer) => this.#onRead(length, buffer) },
      });
      this.#socket = socket;
      socket.setNoDelay(true);
      socket.once('connect', () => {
        this.#send();
        resolve();
      });
      socket.on('error', (error) => {
        this.#fail(error);
        reject(error);
      });
      socket.on('close', () => this.#fail(new Error('the server closed a long-poll connection')));
    });
  }

  stop(): void {
    this.#stopped = true;
    this.#socket?.destroy();
  }

  #fail(error: Error): void {
    if (!this.#stopped) this.failure ??= error;
  }

  #send(): void {
    const cursor = this.#cursor === undefined ? '' : `&cursor=${this.#cursor}`;
    this.#socket?.write(
      `GET ${this.pathAndQuery}&offset=${this.#offset}&live=true${cursor} HTTP/1.1\r\n` +
        `Host: ${this.#host}\r\nConnection: keep-alive\r\n\r\n`,
    );
  }

  /**
   * Only stamps the bytes: the response is parsed, and the next long-poll sent, later (see
   * `parseLater`). Done at once, each response's parsing and request would delay the stamps of
   * the sockets read after it by that work, the bench's own cost, not the server's.
   */
  #onRead(length: number, buffer: Uint8Array): boolean {
    this.#arrived.push([Buffer.from(buffer.subarray(0, length)), performance.now()]);
    if (this.#arrived.length === 1) parseLater(this);
    return true; // keep reading
  }

  parseArrived(): void {
    const arrived = this.#arrived;
    this.#arrived = [];
    for (const [chunk, at] of arrived) {
      if (!this.#stopped) this.#parse(chunk, at);
    }
  }

  /**
   * Reads the responses complete in what arrived. The head is checked for its status and read
   * for the headers the next request needs; the body is not parsed but scanned for its rows'
   * keys (`RowKeys`), as the WebSocket subscribers' frames are.
   */
  #parse(chunk: Buffer, at: number): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const headEnd = this.#buffer.indexOf(HEAD_END);
      if (headEnd === -1) return;
      const head = this.#buffer.toString('latin1', 0, headEnd).toLowerCase();
      const status = Number(head.slice(9, 12));
      const length = Number(headerIn(head, 'content-length'));
      if (!Number.isInteger(length)) {
        this.#fail(new Error('the raw client needs a content-length (got none)'));
        this.stop();
        return;
      }
      const end = headEnd + HEAD_END.length + length;
      if (this.#buffer.length < end) return;
      const body = this.#buffer.subarray(headEnd + HEAD_END.length, end);
      this.#buffer = this.#buffer.subarray(end);
      if (status !== 200) {
        this.#fail(new Error(`live request: HTTP ${status}: ${body.toString('utf8', 0, 300)}`));
        this.stop();
        return;
      }
      this.#offset = headerIn(head, HEADERS.offset) ?? this.#offset;
      this.#cursor = headerIn(head, HEADERS.cursor) ?? this.#cursor;
      this.rowKeys.record(body, this.received, at);
      if (!this.#stopped) this.#send();
    }
  }
}
