import { formatLogOffset, type LogOffset } from '@sluice/protocol';
import type { ShapeAnswerContext } from '../http/shape-answer-context.js';
import { upToDateMessage } from '../http/up-to-date-message.js';
import type { Shape } from '../shapes/shape.js';
import { SharedMessagesFrame } from './messages-frame.js';
import type { PreparedFrame } from './prepared-frame.js';
import { sharedRead } from './shared-read.js';
import type { WsMetrics } from './ws-metrics.js';

/** Why a subscription left its shape's fan-out, other than its own end. */
export type FanOutEnd = 'deleted' | 'closing' | { error: unknown };

/** One subscription as the fan-out sees it: caught up to `position`, its last frame written. */
export interface FanOutSubscriber {
  readonly id: string;
  /** Where the subscription is; the fan-out moves it on as it delivers. */
  position: LogOffset;
  /** `position` as text (shared by every subscriber moved on by the same batch). */
  positionKey: string;
  readonly metrics: WsMetrics;
  /**
   * Sends the frame now; false when the socket took nothing (closed, or closed for
   * backpressure). The subscriber comes back (`add`) once the frame is handed to the network.
   */
  deliver(frame: PreparedFrame): boolean;
  /** The fan-out will not serve it any more (it already left the waiting set). */
  leave(end: FanOutEnd): void;
}

/**
 * How long the fan-out waits before looking again on its own. Flushes, deletion and shutdown
 * (`Shape.notify`) and new subscribers wake it sooner; this only bounds how long anything else
 * (a state change) could go unnoticed.
 */
const IDLE_WAIT_MS = 30_000;

const fanOuts = new WeakMap<Shape, ShapeFanOut>();

/**
 * The WebSocket subscriptions of one shape that wait for its next changes (docs/protocol.md §12,
 * docs/architecture.md): one `waitForChange` for all of them, and on each flush one read and one
 * frame per position, sent to every subscription at that position in one synchronous pass, the
 * metrics counted once per pass. A subscription is in the waiting set only while its previous
 * frame has been handed to the network (it comes back through `add` then), so a client that
 * reads slowly still holds at most one batch per subscription (§12.5).
 */
export class ShapeFanOut {
  readonly #shape: Shape;
  readonly #context: ShapeAnswerContext;
  readonly #waiting = new Set<FanOutSubscriber>();
  #running = false;
  /** Ends the current wait early (a subscriber that is already behind, or none left). */
  #wake: AbortController | undefined;

  private constructor(shape: Shape, context: ShapeAnswerContext) {
    this.#shape = shape;
    this.#context = context;
  }

  static of(shape: Shape, context: ShapeAnswerContext): ShapeFanOut {
    let fanOut = fanOuts.get(shape);
    if (fanOut === undefined) {
      fanOut = new ShapeFanOut(shape, context);
      fanOuts.set(shape, fanOut);
    }
    return fanOut;
  }

  /** The subscriber waits for the entries after its position (served at once if there are). */
  add(subscriber: FanOutSubscriber): void {
    this.#waiting.add(subscriber);
    if (!this.#running) {
      this.#running = true;
      void this.#run();
    } else if (this.#wake && this.#shape.hasEntriesAfter(subscriber.position)) {
      this.#wake.abort();
    }
  }

  /** The subscription ended: it is served no more (no waiter is left behind when none remain). */
  remove(subscriber: FanOutSubscriber): void {
    this.#waiting.delete(subscriber);
    if (this.#waiting.size === 0) this.#wake?.abort();
  }

  async #run(): Promise<void> {
    const shape = this.#shape;
    try {
      while (this.#waiting.size > 0) {
        if (this.#context.longPoll.closing.aborted) this.#leaveAll('closing');
        else if (shape.deleted) this.#leaveAll('deleted');
        else {
          const due = this.#due();
          if (due.length > 0) {
            for (const group of due) await this.#serve(group);
          } else {
            const wake = new AbortController();
            this.#wake = wake;
            await shape.waitForChange(IDLE_WAIT_MS, wake.signal);
            this.#wake = undefined;
          }
        }
      }
    } catch (error) {
      this.#leaveAll({ error });
    } finally {
      this.#running = false;
    }
  }

  /** The waiting subscribers with entries after their position, grouped by position. */
  #due(): FanOutSubscriber[][] {
    const byPosition = new Map<string, FanOutSubscriber[]>();
    for (const subscriber of this.#waiting) {
      const group = byPosition.get(subscriber.positionKey);
      if (group) group.push(subscriber);
      else byPosition.set(subscriber.positionKey, [subscriber]);
    }
    return [...byPosition.values()].filter((group) =>
      this.#shape.hasEntriesAfter(group[0]!.position),
    );
  }

  /** One read and one frame for every subscriber of `group` (all at one position). */
  async #serve(group: FanOutSubscriber[]): Promise<void> {
    const shape = this.#shape;
    let read: Awaited<ReturnType<typeof sharedRead>>;
    try {
      read = await sharedRead(shape, group[0]!.position);
    } catch (error) {
      // Deleted or rotated while read (the next turn sends the refetch), or the server closing.
      if (shape.deleted || this.#context.longPoll.closing.aborted) return;
      for (const subscriber of group) {
        if (this.#waiting.delete(subscriber)) subscriber.leave({ error });
      }
      return;
    }
    let { messages } = read;
    if (read.reachedEnd) {
      const upToDate = upToDateMessage(this.#context.replication.lastSeenLsn());
      messages = messages === '' ? upToDate : `${messages},${upToDate}`;
    }
    const frame = new SharedMessagesFrame(shape.handle, read.last, messages);
    const positionKey = formatLogOffset(read.last);
    shape.markRead();
    let metrics: WsMetrics | undefined;
    let frames = 0;
    let bytes = 0;
    for (const subscriber of group) {
      // Those that ended while the read ran are no longer waiting.
      if (!this.#waiting.delete(subscriber)) continue;
      subscriber.position = read.last;
      subscriber.positionKey = positionKey;
      const prepared = frame.for(subscriber.id);
      if (!subscriber.deliver(prepared)) continue;
      // Every subscriber of one server shares its metrics; counted once per pass.
      if (metrics !== subscriber.metrics) {
        metrics?.sentMessages(frames, bytes);
        metrics = subscriber.metrics;
        frames = 0;
        bytes = 0;
      }
      frames++;
      bytes += prepared.payload.length;
    }
    metrics?.sentMessages(frames, bytes);
  }

  #leaveAll(end: FanOutEnd): void {
    const all = [...this.#waiting];
    this.#waiting.clear();
    for (const subscriber of all) subscriber.leave(end);
  }
}
