import { PATHS, WS_FRAME_TYPES, type WsServerFrame, type WsSubscribeFrame } from '@sluice/protocol';
import { RawWebSocket } from '../support/raw-web-socket.js';
import type { LongPoller } from './long-pollers.js';
import { RowKeys } from './row-keys.js';

/**
 * One WebSocket subscriber (docs/protocol.md §12): its own socket to `/v1/ws` with one
 * subscription to the shape from (handle, offset), remembering when each row (by `value.id`)
 * arrived. It is measured exactly as a long-poll client is (the same interface): a sample is the
 * moment the last byte of the frame holding the row arrived. The socket is the bench's minimal
 * raw client (test/support/raw-web-socket.ts), so 10,000 of them cost the bench process little
 * next to the server; and a frame is not decoded nor parsed: the clients share the bench's two
 * cores with the server, and time spent parsing one socket's frame delays the stamps of the
 * sockets read after it. The bytes are checked instead: the frame must begin as a `messages` frame
 * of this subscription (`{"type":"messages","id":"1",`), and each row in it is found by its key,
 * which names the table and the primary key (`"key":"\"public\".\"<table>\"/\"<id>\""`).
 * Anything else (a frame of another type, an error, a must-refetch) is parsed, and fails the
 * subscriber unless it is a status frame.
 */
export function createWsSubscriber(
  baseUrl: string,
  table: string,
  handle: string,
  offset: string,
): LongPoller {
  return new WsSubscriber(baseUrl, table, handle, offset);
}

/** The subscription id every subscriber uses (one subscription per socket). */
const SUBSCRIPTION_ID = '1';
const MESSAGES_HEAD = Buffer.from(
  `{"type":"${WS_FRAME_TYPES.messages}","id":${JSON.stringify(SUBSCRIPTION_ID)},`,
);

class WsSubscriber implements LongPoller {
  readonly received = new Map<number, number>();
  readonly #rowKeys: RowKeys;
  failure: Error | undefined;
  #stopped = false;
  #socket: RawWebSocket | undefined;
  #subscribed: (() => void) | undefined;

  constructor(
    private readonly baseUrl: string,
    private readonly table: string,
    private readonly handle: string,
    private readonly offset: string,
  ) {
    this.#rowKeys = new RowKeys(table);
  }

  /** Resolves once the subscription's first frame (sent at once by the server) arrived. */
  async start(): Promise<void> {
    const socket = await RawWebSocket.connect(`${this.baseUrl}${PATHS.ws}`, {
      onTextBytes: (bytes, at) => this.#onFrame(bytes, at),
    });
    this.#socket = socket;
    void socket.closed.then(() => this.#fail(new Error(`socket closed (${socket.closeCode})`)));
    const subscribed = new Promise<void>((resolve) => (this.#subscribed = resolve));
    const subscribe: WsSubscribeFrame = {
      type: WS_FRAME_TYPES.subscribe,
      id: SUBSCRIPTION_ID,
      params: { table: this.table },
      handle: this.handle,
      offset: this.offset,
    };
    socket.sendJson(subscribe);
    await subscribed;
  }

  stop(): void {
    this.#stopped = true;
    this.#socket?.destroy();
  }

  #fail(error: Error): void {
    if (!this.#stopped) this.failure ??= error;
    this.#subscribed?.();
  }

  #onFrame(bytes: Buffer, at: number): void {
    if (bytes.compare(MESSAGES_HEAD, 0, MESSAGES_HEAD.length, 0, MESSAGES_HEAD.length) === 0) {
      this.#rowKeys.record(bytes, this.received, at);
      this.#subscribed?.();
      return;
    }
    const text = bytes.toString('utf8');
    const frame = JSON.parse(text) as WsServerFrame;
    if (frame.type !== WS_FRAME_TYPES.status) {
      this.#fail(new Error(`unexpected frame: ${text.slice(0, 300)}`));
    }
  }
}
