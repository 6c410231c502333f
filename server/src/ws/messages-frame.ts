import { WS_FRAME_TYPES, formatLogOffset, type LogOffset } from '@sluice/protocol';
import { PreparedFrame } from './prepared-frame.js';

/**
 * A `messages` frame as text. The log's entries are JSON texts already (`messages`: the inside of
 * the array, joined with commas), and the schema is the `electric-schema` header's JSON: both are
 * spliced in rather than parsed and printed again.
 */
export function messagesFrame(
  id: string,
  handle: string,
  offset: LogOffset,
  schema: string | undefined,
  messages: string,
): string {
  const head = JSON.stringify({
    type: WS_FRAME_TYPES.messages,
    id,
    handle,
    offset: formatLogOffset(offset),
  }).slice(0, -1);
  const schemaPart = schema === undefined ? '' : `,"schema":${schema}`;
  return `${head}${schemaPart},"messages":[${messages}]}`;
}

/**
 * One batch of a shape (no schema: that goes in a subscription's first frame only) as the bytes
 * of the `messages` frames of every subscription it goes to: the same text as `messagesFrame`,
 * but everything after the `id` is encoded once, and the whole frame once per distinct id
 * (clients number their subscriptions, so thousands of sockets share a few ids), framed for the
 * wire with it (`PreparedFrame`). A fan-out to N sockets thus costs N writes of one of a few
 * Buffers, not N JSON texts to build, encode and frame.
 */
export class SharedMessagesFrame {
  readonly #tail: Buffer;
  readonly #byId = new Map<string, PreparedFrame>();

  constructor(handle: string, offset: LogOffset, messages: string) {
    const tail = `,"handle":${JSON.stringify(handle)},"offset":"${formatLogOffset(offset)}","messages":[${messages}]}`;
    this.#tail = Buffer.from(tail);
  }

  /** The frame for the subscription `id`, as UTF-8 bytes and as it goes on the wire. */
  for(id: string): PreparedFrame {
    let frame = this.#byId.get(id);
    if (frame === undefined) {
      const head = Buffer.from(`{"type":"${WS_FRAME_TYPES.messages}","id":${JSON.stringify(id)}`);
      frame = new PreparedFrame(Buffer.concat([head, this.#tail]));
      this.#byId.set(id, frame);
    }
    return frame;
  }
}
