import type { ShapeDefinition } from './shape-definition.js';

/**
 * What the servers sharing a storage tell each other over its channel (docs/architecture.md,
 * "Several servers"). The writer (the holder of the replication lock) announces what it made
 * durable and what it removed, and beats; the readers ask it to create and delete shapes, and
 * say which shapes they serve. Every message names its sender (`from`, a server's instance id).
 */
export type ShapeEvent =
  /** A flush round made these shapes' new entries durable; `lsn`: everything up to it is. */
  | { type: 'flushed'; from: string; seq: number; lsn: string; handles: string[] }
  /** Every second: whether the writer streams replication, and its latest flush round. */
  | { type: 'heartbeat'; from: string; seq: number; lsn: string; live: boolean }
  /** The shape for `key` (a definition key) exists, its snapshot complete. */
  | { type: 'created'; from: string; key: string; handle: string }
  /** The writer could not make the shape for `key`: the error a request gets. */
  | { type: 'create-failed'; from: string; key: string; error: ForwardedError }
  /** These shapes are gone (idle, rotated, deleted): readers forget them. */
  | { type: 'removed'; from: string; handles: string[] }
  /** A reader asks for the shape of `definition`. */
  | { type: 'create'; from: string; definition: ShapeDefinition }
  /** A reader asks for a shape to be deleted (`DELETE /v1/shape`). */
  | { type: 'delete'; from: string; handle: string }
  /** A reader served these shapes lately: they are not idle. */
  | { type: 'read'; from: string; handles: string[] };

/** A coded error as it crosses to another server (`SluiceError` without its stack). */
export interface ForwardedError {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

const TYPES = new Set<ShapeEvent['type']>([
  'flushed',
  'heartbeat',
  'created',
  'create-failed',
  'removed',
  'create',
  'delete',
  'read',
]);

/**
 * A message from the channel, or undefined when it is not one of ours (another version's, or
 * garbage): only servers of one deployment publish there, so the shape is checked, not each
 * field's contents.
 */
export function parseShapeEvent(message: string): ShapeEvent | undefined {
  try {
    const event = JSON.parse(message) as Partial<ShapeEvent> | null;
    if (typeof event !== 'object' || event === null) return undefined;
    if (typeof event.from !== 'string' || !TYPES.has(event.type!)) return undefined;
    return event as ShapeEvent;
  } catch {
    return undefined;
  }
}
