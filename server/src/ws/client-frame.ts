import { PARAMS, SNAPSHOT_END, WS_FRAME_TYPES, compareLogOffsets } from '@sluice/protocol';
import { SluiceError, requestInvalid } from '../errors/sluice-error.js';
import { isValidationErrors, parseShapeRequest, type ShapeRequest } from '../http/shape-request.js';

/** A frame from a client, read and checked (docs/protocol.md §12). */
export type ClientFrame =
  | { type: typeof WS_FRAME_TYPES.subscribe; id: string; request: ShapeRequest }
  | { type: typeof WS_FRAME_TYPES.unsubscribe; id: string }
  /** Refused: `id` when the frame named one, so the client knows which subscription failed. */
  | { type: 'invalid'; id: string | undefined; error: SluiceError };

/** Subscription ids: chosen by the client, echoed in every frame about the subscription. */
const MAX_ID_LENGTH = 64;

/** The shape's definition, as in `GET /v1/shape` (docs/protocol.md §2). */
const SHAPE_FIELDS = [
  PARAMS.table,
  PARAMS.where,
  PARAMS.params,
  PARAMS.columns,
  PARAMS.replica,
  PARAMS.log,
] as const;
const TEXT_FIELDS = [PARAMS.table, PARAMS.where, PARAMS.columns, PARAMS.replica, PARAMS.log];

type Query = Record<string, string | string[] | undefined>;

function frameInvalid(field: string, problem: string): SluiceError {
  return new SluiceError('SLUICE_ERR_WS_FRAME_INVALID', `${field}: ${problem}`, {
    fields: { [field]: [problem] },
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Reads one text frame. A subscribe's shape is checked by the very function that checks
 * `GET /v1/shape`'s query (`parseShapeRequest`), so a frame is refused exactly where the GET
 * would be, with the same code and the same words.
 */
export function parseClientFrame(text: string): ClientFrame {
  let frame: unknown;
  try {
    frame = JSON.parse(text);
  } catch {
    return { type: 'invalid', id: undefined, error: frameInvalid('frame', 'is not valid JSON') };
  }
  if (!isObject(frame)) {
    return { type: 'invalid', id: undefined, error: frameInvalid('frame', 'must be an object') };
  }
  const { type, id } = frame;
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) {
    const problem = `must be a string of 1 to ${MAX_ID_LENGTH} characters`;
    return { type: 'invalid', id: undefined, error: frameInvalid('id', problem) };
  }
  if (type === WS_FRAME_TYPES.unsubscribe) return { type, id };
  if (type !== WS_FRAME_TYPES.subscribe) {
    const problem = `must be ${WS_FRAME_TYPES.subscribe} or ${WS_FRAME_TYPES.unsubscribe}`;
    return { type: 'invalid', id, error: frameInvalid('type', problem) };
  }
  const query = shapeQuery(frame);
  if (query instanceof SluiceError) return { type: 'invalid', id, error: query };
  const request = parseShapeRequest(query);
  if (isValidationErrors(request)) return { type: 'invalid', id, error: requestInvalid(request) };
  const refusal = snapshotRefusal(request.offset);
  if (refusal !== undefined) return { type: 'invalid', id, error: refusal };
  return { type, id, request };
}

/** Snapshots stay HTTP: a subscription starts at or after the snapshot's end (`0_inf`). */
function snapshotRefusal(offset: ShapeRequest['offset']): SluiceError | undefined {
  if (offset === 'before-all') {
    return requestInvalid({
      [PARAMS.offset]: [
        '-1 is not served over WebSocket: read the snapshot with GET /v1/shape, then subscribe from its offset',
      ],
    });
  }
  if (offset !== 'now' && compareLogOffsets(offset, SNAPSHOT_END) < 0) {
    return requestInvalid({
      [PARAMS.offset]: [
        'must be at or after the end of the initial snapshot (0_inf): read the snapshot with GET /v1/shape',
      ],
    });
  }
  return undefined;
}

/** The subscribe frame as the query string of the equivalent `GET /v1/shape`. */
function shapeQuery(frame: Record<string, unknown>): Query | SluiceError {
  const { params: shape, handle, offset } = frame;
  if (!isObject(shape)) return frameInvalid('params', 'must be an object');
  const errors: Record<string, string[]> = {};
  const query: Query = {};
  for (const [name, value] of [
    [PARAMS.handle, handle],
    [PARAMS.offset, offset],
  ] as const) {
    if (value === undefined) continue;
    if (typeof value === 'string') query[name] = value;
    else errors[name] = ['must be a string'];
  }
  for (const key of Object.keys(shape)) {
    if (!(SHAPE_FIELDS as readonly string[]).includes(key)) {
      errors[key] = [`is not a shape parameter (${SHAPE_FIELDS.join(', ')})`];
    }
  }
  for (const name of TEXT_FIELDS) {
    const value = shape[name];
    if (value === undefined) continue;
    if (typeof value === 'string') query[name] = value;
    else errors[name] = ['must be a string'];
  }
  const values = shape[PARAMS.params];
  if (values !== undefined) {
    // `params[1]=…` in a query string: the GET's own checks then number and count them.
    const entries = Array.isArray(values)
      ? values.map((value, index) => [String(index + 1), value] as const)
      : isObject(values)
        ? Object.entries(values)
        : undefined;
    if (entries === undefined) {
      errors[PARAMS.params] = ['must be an object {"1": "…"} or an array of strings'];
    } else if (entries.some(([, value]) => typeof value !== 'string')) {
      errors[PARAMS.params] = ['values must be strings'];
    } else {
      for (const [key, value] of entries) query[`${PARAMS.params}[${key}]`] = value as string;
    }
  }
  return Object.keys(errors).length > 0 ? requestInvalid(errors) : query;
}
