// The `ws` package's WebSocket, as @sluice/client's `webSocket` option takes it on Node 20, with
// a record of what went over it: sockets opened, and every frame the server sent, by type. Tests
// use it to show that live changes really came over a socket (and how many sockets the page's
// streams shared), not over long-polls the client fell back to.
import { WS_FRAME_TYPES, type WsServerFrame } from '@sluice/protocol';
import WebSocket from 'ws';

export interface WebSocketTap {
  /** Pass as `webSocket` (with `liveTransport: 'websocket'`). */
  readonly WebSocket: new (url: string) => WebSocket;
  /** Sockets constructed so far, with their URLs (the secret included, as the client sent it). */
  readonly opened: string[];
  /** Sockets currently open. */
  readonly open: Set<WebSocket>;
  /** Frames received, by `type`. */
  readonly frames: Map<string, number>;
  /** Change messages received in `messages` frames. */
  changes: number;
  /** Status frames received, in order: `status.status` of each. */
  readonly statuses: string[];
  /** Closes every open socket abruptly (no close frame), as a network failure would. */
  terminateAll(): void;
}

export function tapWebSockets(): WebSocketTap {
  const tap: WebSocketTap = {
    WebSocket: class TappedWebSocket extends WebSocket {
      constructor(url: string) {
        super(url);
        tap.opened.push(url);
        this.on('open', () => tap.open.add(this));
        this.on('close', () => tap.open.delete(this));
        // Text frames arrive as one Buffer (ws's default binaryType).
        this.on('message', (data: Buffer) => record(data.toString('utf8')));
      }
    },
    opened: [],
    open: new Set(),
    frames: new Map(),
    changes: 0,
    statuses: [],
    terminateAll() {
      for (const socket of tap.open) socket.terminate();
    },
  };
  const record = (text: string) => {
    let frame: WsServerFrame;
    try {
      frame = JSON.parse(text) as WsServerFrame;
    } catch {
      frame = { type: 'not JSON' } as unknown as WsServerFrame;
    }
    tap.frames.set(frame.type, (tap.frames.get(frame.type) ?? 0) + 1);
    if (frame.type === WS_FRAME_TYPES.messages) {
      tap.changes += frame.messages.filter((message) => 'key' in message).length;
    } else if (frame.type === WS_FRAME_TYPES.status) {
      tap.statuses.push(frame.status.status);
    }
  };
  return tap;
}
