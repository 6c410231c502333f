import { CONTROL, EVENT } from '@sluice/protocol';
import {
  isChangeMessage,
  isEventMessage,
  type ChangeMessage,
  type EventMessage,
  type LogMode,
  type Message,
  type Row,
} from './messages.js';
import { MoveTags } from './move-tags.js';
import type { ShapeStreamInterface } from './shape-stream.js';
import type { Mode } from './shape-stream-state.js';

export type ShapeData<T extends Row<unknown> = Row> = Map<string, T>;

export type ShapeChangedCallback<T extends Row<unknown> = Row> = (data: {
  value: ShapeData<T>;
  rows: T[];
  mode: Mode;
}) => void;

/**
 * A shape's rows, kept in memory from a stream's messages, keyed by their `key`. Subscribers are
 * told at up-to-date boundaries only, so they never see a half-applied batch (a snapshot being
 * read chunk by chunk, the log being replayed after fallback): once the data first becomes
 * complete, then whenever an up-to-date follows a change or a change of mode.
 *
 * - insert sets the whole row (over a row of the same key, if any);
 * - update merges its columns into the row; an update of a row the Shape does not have is
 *   dropped (only an inconsistent log or a `changes_only` shape sends one, and either way the
 *   row is not part of the shape);
 * - delete removes the row (a missing one is no error);
 * - `must-refetch` clears every row: a 409, or a fallback answer about to replace them;
 * - in a shape whose where clause has a subquery, changes carry tags and the stream sends
 *   `move-out` / `move-in` events when a change in another table moves rows out of the shape or
 *   back in: a move-out deletes the rows it leaves outside every disjunct (`MoveTags` keeps
 *   what that takes), a move-in only marks conditions true again (its rows follow as inserts).
 *
 * client/SPEC.md explains why these rules make the rows right again after fallback.
 */
export class Shape<T extends Row<unknown> = Row> {
  readonly stream: ShapeStreamInterface<T>;
  readonly #data: ShapeData<T> = new Map();
  readonly #moveTags = new MoveTags();
  readonly #subscribers = new Map<object, ShapeChangedCallback<T>>();
  #upToDate = false;
  /** Rows changed since subscribers were last told. */
  #changed = false;
  #notifiedMode: Mode | undefined;
  #error: Error | false = false;

  constructor(stream: ShapeStreamInterface<T>) {
    this.stream = stream;
    stream.subscribe(
      (messages, { mode }) => this.#process(messages, mode),
      (error) => this.#fail(error),
    );
  }

  get isUpToDate(): boolean {
    return this.#upToDate;
  }

  /** The rows once complete (now, if they already are). Rejects if the stream fails first. */
  get rows(): Promise<T[]> {
    return this.value.then((value) => [...value.values()]);
  }

  get currentRows(): T[] {
    return [...this.#data.values()];
  }

  /** Rows by key, once complete. */
  get value(): Promise<ShapeData<T>> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#upToDate) return Promise.resolve(this.#data);
    return new Promise((resolve, reject) => {
      const unsubscribe = this.subscribe(({ value }) => {
        unsubscribe();
        if (this.#error) reject(this.#error);
        else resolve(value);
      });
    });
  }

  get currentValue(): ShapeData<T> {
    return this.#data;
  }

  /** The error that stopped the stream, or false. */
  get error(): Error | false {
    return this.#error;
  }

  get mode(): Mode {
    return this.stream.mode;
  }

  get logMode(): LogMode {
    return this.stream.logMode;
  }

  lastSyncedAt(): number | undefined {
    return this.stream.lastSyncedAt();
  }

  isLoading(): boolean {
    return this.stream.isLoading();
  }

  isConnected(): boolean {
    return this.stream.isConnected();
  }

  subscribe(callback: ShapeChangedCallback<T>): () => void {
    const id = {};
    this.#subscribers.set(id, callback);
    return () => this.#subscribers.delete(id);
  }

  unsubscribeAll(): void {
    this.#subscribers.clear();
  }

  get numSubscribers(): number {
    return this.#subscribers.size;
  }

  #process(messages: Message<T>[], mode: Mode): void {
    let notify = false;
    for (const message of messages) {
      if (isChangeMessage(message)) {
        this.#apply(message);
        this.#upToDate = false;
        this.#changed = true;
      } else if (isEventMessage(message)) {
        if (this.#move(message)) {
          this.#upToDate = false;
          this.#changed = true;
        }
      } else if (message.headers.control === CONTROL.mustRefetch) {
        this.#data.clear();
        this.#moveTags.clear();
        this.#error = false;
        this.#upToDate = false;
        this.#changed = true;
      } else if (message.headers.control === CONTROL.upToDate) {
        notify ||= !this.#upToDate || this.#changed || mode !== this.#notifiedMode;
        this.#upToDate = true;
        this.#changed = false;
      }
    }
    if (notify) this.#notify(mode);
  }

  #apply({ key, value, headers }: ChangeMessage<T>): void {
    if (headers.operation === 'delete') {
      this.#data.delete(key);
      this.#moveTags.forget(key);
      return;
    }
    if (headers.operation === 'insert') this.#data.set(key, value);
    else {
      const row = this.#data.get(key);
      if (row) this.#data.set(key, { ...row, ...value });
    }
    // Tags only for rows the Shape holds (an update of a missing row was dropped above).
    if (this.#data.has(key)) this.#moveTags.change(key, headers);
  }

  /** Applies a move event; whether it deleted rows. */
  #move({ headers }: EventMessage): boolean {
    if (headers.event === EVENT.moveIn) {
      this.#moveTags.moveIn(headers.patterns);
      return false;
    }
    if (headers.event !== EVENT.moveOut) return false;
    let deleted = false;
    for (const key of this.#moveTags.moveOut(headers.patterns)) {
      deleted = this.#data.delete(key) || deleted;
    }
    return deleted;
  }

  #fail(error: Error): void {
    this.#error = error;
    this.#notify(this.stream.mode);
  }

  #notify(mode: Mode): void {
    this.#notifiedMode = mode;
    const rows = this.currentRows;
    for (const callback of [...this.#subscribers.values()]) {
      callback({ value: this.#data, rows, mode });
    }
  }
}
