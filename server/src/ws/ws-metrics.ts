import { Counter, Gauge, type Registry } from 'prom-client';
import { WS_FRAME_TYPES, type WsFrameType } from '@sluice/protocol';

/**
 * Why a socket ended (`sluice_ws_sockets_closed_total`): a fixed set, so no client can add
 * series. `client`: the client closed it or went away; `shutdown`: the server closed (1001);
 * `heartbeat`: it stopped answering pings; `backpressure`: its unsent bytes passed the limit
 * (4000); `frame-too-big`: it sent a frame over the limit (1009); `protocol`: it broke the
 * WebSocket protocol (ws closes it: bad UTF-8, bad opcode…).
 */
export type WsCloseReason =
  'client' | 'shutdown' | 'heartbeat' | 'backpressure' | 'frame-too-big' | 'protocol';

/** Why an upgrade was answered with an HTTP error instead of a socket. */
export type WsRefusalReason = 'unauthorized' | 'origin' | 'socket-limit' | 'shutting-down';

/** The WebSocket transport's metrics (docs/operations.md), on the app's registry. */
export class WsMetrics {
  readonly socketsOpen: Gauge;
  readonly subscriptions: Gauge;
  readonly framesSent: Counter<'type'>;
  readonly bytesSent: Counter;
  readonly socketsClosed: Counter<'reason'>;
  readonly upgradesRefused: Counter<'reason'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.socketsOpen = new Gauge({
      name: 'sluice_ws_sockets_open',
      help: 'Open WebSockets (GET /v1/ws)',
      registers,
    });
    this.subscriptions = new Gauge({
      name: 'sluice_ws_subscriptions',
      help: 'Shape subscriptions held by open WebSockets',
      registers,
    });
    this.framesSent = new Counter({
      name: 'sluice_ws_frames_sent_total',
      help: 'Frames sent to WebSocket clients, by frame type',
      labelNames: ['type'],
      registers,
    });
    this.bytesSent = new Counter({
      name: 'sluice_ws_bytes_sent_total',
      help: 'Bytes of frames sent to WebSocket clients (payloads)',
      registers,
    });
    this.socketsClosed = new Counter({
      name: 'sluice_ws_sockets_closed_total',
      help: 'WebSockets ended, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.upgradesRefused = new Counter({
      name: 'sluice_ws_upgrades_refused_total',
      help: 'WebSocket upgrades answered with an HTTP error, by reason',
      labelNames: ['reason'],
      registers,
    });
  }

  sent(type: WsFrameType, bytes: number): void {
    this.framesSent.inc({ type });
    this.bytesSent.inc(bytes);
  }

  /** `frames` messages frames of `bytes` in all, counted at once (one fan-out pass). */
  sentMessages(frames: number, bytes: number): void {
    if (frames === 0) return;
    this.framesSent.inc({ type: WS_FRAME_TYPES.messages }, frames);
    this.bytesSent.inc(bytes);
  }
}
