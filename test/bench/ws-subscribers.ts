import { PATHS, WS_FRAME_TYPES, type WsServerFrame, type WsSubscribeFrame } from '@sluice/protocol';
import { RawWebSocket } from '../support/raw-web-socket.js';
import type { LongPoller } from './long-pollers.js';

/**
 * One WebSocket subscriber (docs/protocol.md §12): its own socket to `/v1/ws` with one
 * subscription to the shape from (handle, offset), remembering when each row (by `value.id`)
 * arrived. It is measured exactly as a long-poll client is (the same interface): a sample is the
 * moment the last byte of the frame holding the row arrived. The socket is the bench's minimal
 * raw client (test/support/raw-web-socket.ts), so 10,000 of them cost the bench process little
 * next to the server.
 */
export function createWsSubscriber(
  baseUrl: string,
  table: string,
  handle: string,
  offset: string,
): LongPoller {
  return new WsSubscriber(baseUrl, table, handle, offset);
}

class WsSubscriber implements LongPoller {
  readonly received = new Map<number, number>();
  failure: Error | undefined;
  #stopped = false;
  #socket: RawWebSocket | undefined;
  #subscribed: (() => void) | undefined;

  constructor(
    private readonly baseUrl: string,
    private readonly table: string,
    private readonly handle: string,
    private readonly offset: string,
  ) {}

  /** Resolves once the subscription's first frame (sent at once by the server) arrived. */
  async start(): Promise<void> {
    const socket = await RawWebSocket.connect(`${this.baseUrl}${PATHS.ws}`, {
      onText: (text, at) => this.#onFrame(text, at),
    });
    this.#socket = socket;
    void socket.closed.then(() => this.#fail(new Error(`socket closed (${socket.closeCode})`)));
    const subscribed = new Promise<void>((resolve) => (this.#subscribed = resolve));
    const subscribe: WsSubscribeFrame = {
      type: WS_FRAME_TYPES.subscribe,
      id: '1',
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

  #onFrame(text: string, at: number): void {
    const frame = JSON.parse(text) as WsServerFrame;
    switch (frame.type) {
      case WS_FRAME_TYPES.messages:
        for (const message of frame.messages) {
          const id = 'key' in message ? message.value.id : undefined;
          if (id !== undefined && id !== null) this.received.set(Number(id), at);
        }
        this.#subscribed?.();
        break;
      case WS_FRAME_TYPES.status:
        break;
      default:
        this.#fail(new Error(`unexpected frame: ${text.slice(0, 300)}`));
    }
  }
}
