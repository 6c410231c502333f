// A minimal WebSocket client on a bare TCP socket (RFC 6455: the upgrade, text frames, ping →
// pong, close), for what the `ws` package's client cannot do or does at too high a cost: the
// bench holds 10,000 of them in one process beside the server, and a slow-consumer test needs a
// client that stops reading while the server keeps writing (`pause()`).
import { randomBytes } from 'node:crypto';
import net from 'node:net';

const OPCODES = { continuation: 0x0, text: 0x1, close: 0x8, ping: 0x9, pong: 0xa } as const;
const HEAD_END = Buffer.from('\r\n\r\n');

export interface RawWebSocketOptions {
  /** Extra request headers of the upgrade (e.g. `Origin`). */
  headers?: Record<string, string>;
  /** Called with each complete text message and performance.now() when its last byte arrived. */
  onText?: (text: string, receivedAt: number) => void;
  /**
   * Instead of `onText`: each complete text message as its UTF-8 bytes, not decoded (a view of
   * what was read, valid during the call only), for a caller that looks at a few bytes only.
   */
  onTextBytes?: (bytes: Buffer, receivedAt: number) => void;
}

export class RawWebSocket {
  /** The close code the server sent, or 1006 when the connection ended without one. */
  closeCode: number | undefined;
  /** Resolves when the TCP connection has ended, for any reason. */
  readonly closed: Promise<void>;
  /** Bytes received so far (the upgrade answer included). */
  bytesRead = 0;
  readonly #socket: net.Socket;
  readonly #onTextBytes: ((bytes: Buffer, receivedAt: number) => void) | undefined;
  #buffer: Buffer = Buffer.alloc(0);
  #upgraded = false;
  #fragments: Buffer[] = [];

  private constructor(socket: net.Socket, options: RawWebSocketOptions) {
    this.#socket = socket;
    const { onText, onTextBytes } = options;
    this.#onTextBytes =
      onTextBytes ?? (onText && ((bytes, at) => onText(bytes.toString('utf8'), at)));
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.closeCode ??= 1006;
        resolve();
      }),
    );
    socket.on('error', () => {}); // the close that follows is what callers look at
  }

  /**
   * Opens `url` (`http://host:port/path?query`); resolves once the server answered 101, rejects
   * with the status line and body when it answered anything else.
   */
  static connect(url: string, options: RawWebSocketOptions = {}): Promise<RawWebSocket> {
    const target = new URL(url);
    const socket = net.connect({ host: target.hostname, port: Number(target.port) });
    socket.setNoDelay(true);
    const client = new RawWebSocket(socket, options);
    return new Promise((resolve, reject) => {
      socket.once('connect', () => {
        const headers = {
          Host: target.host,
          Upgrade: 'websocket',
          Connection: 'Upgrade',
          'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
          'Sec-WebSocket-Version': '13',
          ...options.headers,
        };
        const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
        socket.write(`GET ${target.pathname}${target.search} HTTP/1.1\r\n${lines.join('')}\r\n`);
      });
      socket.on('data', (chunk: Buffer) => {
        client.bytesRead += chunk.length;
        const outcome = client.#read(chunk);
        if (outcome === 'upgraded') resolve(client);
        else if (outcome !== undefined) reject(new Error(`no upgrade: ${outcome}`));
      });
      socket.once('close', () => reject(new Error('the connection closed before the upgrade')));
      socket.once('error', reject);
    });
  }

  /** Sends `value` as one JSON text frame. */
  sendJson(value: unknown): void {
    this.sendText(JSON.stringify(value));
  }

  sendText(text: string): void {
    this.#send(OPCODES.text, Buffer.from(text));
  }

  /** Stops reading: the server's writes pile up in the kernel, then in the server's buffers. */
  pause(): void {
    this.#socket.pause();
  }

  /** Reads again: what piled up arrives, then whatever the server sends next. */
  resume(): void {
    this.#socket.resume();
  }

  /** Closes with a close frame, then the TCP connection. */
  close(): void {
    if (this.#socket.destroyed) return;
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    this.#send(OPCODES.close, code);
    this.#socket.end();
  }

  /** Drops the connection without a close frame. */
  destroy(): void {
    this.#socket.destroy();
  }

  /** Client frames are masked (RFC 6455 §5.3). */
  #send(opcode: number, payload: Buffer): void {
    if (this.#socket.destroyed || this.#socket.writableEnded) return;
    const length = payload.length;
    const head = length < 126 ? 2 : length < 65_536 ? 4 : 10;
    const frame = Buffer.alloc(head + 4 + length);
    frame[0] = 0x80 | opcode;
    if (length < 126) frame[1] = 0x80 | length;
    else if (length < 65_536) {
      frame[1] = 0x80 | 126;
      frame.writeUInt16BE(length, 2);
    } else {
      frame[1] = 0x80 | 127;
      frame.writeBigUInt64BE(BigInt(length), 2);
    }
    const mask = randomBytes(4);
    mask.copy(frame, head);
    for (let i = 0; i < length; i++) frame[head + 4 + i] = payload[i]! ^ mask[i & 3]!;
    this.#socket.write(frame);
  }

  /** Takes the next bytes; returns 'upgraded' on the 101, the answer's text on a refusal. */
  #read(chunk: Buffer): string | undefined {
    const at = performance.now();
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    let outcome: string | undefined;
    if (!this.#upgraded) {
      const end = this.#buffer.indexOf(HEAD_END);
      if (end === -1) return undefined;
      const head = this.#buffer.toString('latin1', 0, end);
      if (!/^HTTP\/1\.1 101 /.test(head)) {
        this.#socket.destroy();
        return this.#buffer.toString('utf8').slice(0, 1_000);
      }
      this.#upgraded = true;
      this.#buffer = this.#buffer.subarray(end + HEAD_END.length);
      outcome = 'upgraded';
    }
    this.#frames(at);
    return outcome;
  }

  #frames(at: number): void {
    for (;;) {
      const buffer = this.#buffer;
      if (buffer.length < 2) return;
      const fin = (buffer[0]! & 0x80) !== 0;
      const opcode = buffer[0]! & 0x0f;
      let length = buffer[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffer.length < 10) return;
        length = Number(buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (buffer.length < offset + length) return;
      const payload = buffer.subarray(offset, offset + length);
      this.#buffer = buffer.subarray(offset + length);
      switch (opcode) {
        case OPCODES.text:
        case OPCODES.continuation:
          if (fin && this.#fragments.length === 0) {
            this.#onTextBytes?.(payload, at);
          } else {
            this.#fragments.push(payload);
            if (fin) {
              const whole = Buffer.concat(this.#fragments);
              this.#fragments = [];
              this.#onTextBytes?.(whole, at);
            }
          }
          break;
        case OPCODES.ping:
          this.#send(OPCODES.pong, payload);
          break;
        case OPCODES.close:
          this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
          this.#send(OPCODES.close, payload.subarray(0, 2));
          this.#socket.end();
          break;
        default:
          break;
      }
    }
  }
}
