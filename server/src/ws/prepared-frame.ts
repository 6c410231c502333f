import * as ws from 'ws';
import type { WebSocket } from 'ws';

/** ws's own framing (exported by ws, not declared by @types/ws). */
interface WsSender {
  frame(
    data: Buffer,
    options: { fin: boolean; opcode: number; mask: boolean; readOnly: boolean; rsv1: boolean },
  ): Buffer[];
}

/** What a socket's sender is made of, as far as `sendPreparedFrame` needs it. */
interface SocketSender {
  /** Idle (0): nothing queued behind a compression or a Blob being read. */
  _state?: unknown;
  sendFrame?: (list: Buffer[], callback: (error?: Error) => void) => void;
}

const TEXT_OPCODE = 0x1;
const TEXT_FRAME = { binary: false } as const;
const { Sender } = ws as unknown as { Sender?: WsSender };

/**
 * A text frame as it goes on the wire: ws's frame head (server frames are not masked) and the
 * payload in one Buffer, made once and written to every socket it goes to. Sent with `send`,
 * ws would build the head and write head and payload again for each socket (about 40 % of a
 * 1,000-socket fan-out's time, docs/performance.md measure 3).
 */
export class PreparedFrame {
  /** The frame's text, as UTF-8. */
  readonly payload: Buffer;
  /** Head and payload; undefined when this ws does not export its framing. */
  readonly wire: Buffer | undefined;

  constructor(payload: Buffer) {
    const head = { fin: true, opcode: TEXT_OPCODE, mask: false, readOnly: false, rsv1: false };
    this.wire = Sender && Buffer.concat(Sender.frame(payload, head));
    // The payload is the wire bytes' end: a large batch is held once, not twice.
    this.payload = this.wire ? this.wire.subarray(this.wire.length - payload.length) : payload;
  }
}

/**
 * Sends `frame` on an open socket, calling `written` once it is handed to the network: its wire
 * bytes through the socket's own sender when that sender is idle (so nothing it queued can be
 * overtaken; sockets never compress, ws-transport.ts), else through `send` like any frame.
 */
export function sendPreparedFrame(
  socket: WebSocket,
  frame: PreparedFrame,
  written: (error?: Error) => void,
): void {
  const sender = (socket as unknown as { _sender?: SocketSender })._sender;
  if (frame.wire !== undefined && sender?._state === 0 && typeof sender.sendFrame === 'function') {
    sender.sendFrame([frame.wire], written);
  } else {
    socket.send(frame.payload, TEXT_FRAME, written);
  }
}
