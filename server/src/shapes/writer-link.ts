import type { ErrorCode } from '@sluice/protocol';
import { SluiceError } from '../errors/sluice-error.js';
import { definitionKey, type ShapeDefinition } from './shape-definition.js';
import type { ShapeEvent } from './shape-events.js';

/**
 * A request not answered yet is sent again this often: the writer may have died with it (its
 * successor takes the lock within seconds) or the message may have been lost (pub/sub keeps
 * nothing). The writer answers every copy alike: it creates a definition's shape once.
 */
const ASK_AGAIN_MS = 2_000;
/** A request the writer has not answered by then fails with 503 NOT_READY (retry shortly). */
const ANSWER_TIMEOUT_MS = 30_000;

interface Pending<T> {
  promise: Promise<T>;
  settle(result: { value: T } | { error: Error }): void;
}

/**
 * A reader's requests to the writer of the storage it shares (shape creation and deletion, the
 * shapes it serves), sent over the storage's channel; the answers come back as events, handed to
 * `answered`. Requests for one definition (or handle) share one wait.
 */
export class WriterLink {
  readonly #instance: string;
  readonly #publish: (event: ShapeEvent) => Promise<void>;
  readonly #creations = new Map<string, Pending<string>>();
  readonly #deletions = new Map<string, Pending<void>>();

  constructor(instance: string, publish: (event: ShapeEvent) => Promise<void>) {
    this.#instance = instance;
    this.#publish = publish;
  }

  /** The handle of the shape for `definition`, its snapshot complete; the writer makes it if need be. */
  requestShape(definition: ShapeDefinition): Promise<string> {
    const from = this.#instance;
    return this.#request(this.#creations, definitionKey(definition), {
      type: 'create',
      from,
      definition,
    });
  }

  /** Asks the writer to delete a shape; resolves once it has. */
  requestDelete(handle: string): Promise<void> {
    return this.#request(this.#deletions, handle, { type: 'delete', from: this.#instance, handle });
  }

  /** Tells the writer these shapes were served here lately (they are not idle). */
  reportRead(handles: string[]): void {
    if (handles.length === 0) return;
    this.#publish({ type: 'read', from: this.#instance, handles }).catch(() => undefined);
  }

  /** An event from the writer: the answer to requests waiting here, if it is one. */
  answered(event: ShapeEvent): void {
    if (event.type === 'created') {
      this.#creations.get(event.key)?.settle({ value: event.handle });
    } else if (event.type === 'create-failed') {
      const { code, message, details } = event.error;
      const error = new SluiceError(code as ErrorCode, message, details);
      this.#creations.get(event.key)?.settle({ error });
    } else if (event.type === 'removed') {
      for (const handle of event.handles) this.#deletions.get(handle)?.settle({ value: undefined });
    }
  }

  /** Ends every wait with `error` (the server closes, or it writes the storage itself now). */
  close(error: Error): void {
    for (const pending of [...this.#creations.values(), ...this.#deletions.values()]) {
      pending.settle({ error });
    }
  }

  #request<T>(waits: Map<string, Pending<T>>, key: string, event: ShapeEvent): Promise<T> {
    const existing = waits.get(key);
    if (existing) return existing.promise;
    const ask = () => void this.#publish(event).catch(() => undefined);
    let settle!: Pending<T>['settle'];
    const promise = new Promise<T>((resolve, reject) => {
      settle = (result) => {
        if (waits.get(key) !== pending) return;
        waits.delete(key);
        clearInterval(again);
        clearTimeout(timeout);
        if ('error' in result) reject(result.error);
        else resolve(result.value);
      };
    });
    const pending: Pending<T> = { promise, settle };
    waits.set(key, pending);
    const again = setInterval(ask, ASK_AGAIN_MS);
    const timeout = setTimeout(() => {
      const message = `the server that writes the shapes did not answer within ${ANSWER_TIMEOUT_MS / 1000} s (it may be changing over); retry shortly`;
      settle({ error: new SluiceError('SLUICE_ERR_NOT_READY', message, { retryAfterS: 1 }) });
    }, ANSWER_TIMEOUT_MS);
    ask();
    return promise;
  }
}
