export {
  ShapeStream,
  type ShapeStreamInterface,
  type ShapeStreamSubscriber,
} from './shape-stream.js';
export { Shape, type ShapeChangedCallback, type ShapeData } from './shape.js';
export type {
  RetryOpts,
  ShapeStreamErrorHandler,
  ShapeStreamOptions,
} from './shape-stream-options.js';
export type {
  ExternalHeadersRecord,
  ExternalParamsRecord,
  PostgresParams,
} from './shape-params.js';
export type { Mode } from './shape-stream-state.js';
export type { LiveTransport, WebSocketConstructor, WebSocketLike } from './live-socket.js';
export {
  isChangeMessage,
  isControlMessage,
  isEventMessage,
  type ChangeMessage,
  type ControlMessage,
  type EventMessage,
  type EventName,
  type GetExtensions,
  type LogMode,
  type Message,
  type MovePattern,
  type MoveTag,
  type Offset,
  type Operation,
  type Row,
  type Value,
} from './messages.js';
export type { ColumnInfo, Schema } from './schema.js';
export { defaultParser, type ParseFunction, type Parser } from './value-parser.js';
export { BackoffDefaults, type BackoffOptions } from './backoff.js';
export {
  FetchBackoffAbortError,
  FetchError,
  InvalidShapeOptionsError,
  InvalidSignalError,
  MalformedResponseError,
  MissingHeadersError,
  MissingShapeHandleError,
  MissingShapeUrlError,
  ParserNullValueError,
  ReservedParamError,
} from './errors.js';
