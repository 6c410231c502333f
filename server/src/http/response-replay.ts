import type { ServerResponse } from 'node:http';
import { writeAnswer } from './send-shape-answer.js';

/** What node:http keeps of a response's head once it is written (not in its typings). */
interface ResponseInternals {
  /** The head as written: status line, headers (Date, Connection and Keep-Alive included). */
  _header?: unknown;
  /** Whether that head went out: `end()` then writes nothing more of its own. */
  _headerSent?: unknown;
  /** Set (Node ≥ 18.10) once `maxRequestsPerSocket` is reached: node's head then says close. */
  maxRequestsOnConnectionReached?: unknown;
}

/**
 * One answer written to many held requests (docs/architecture.md, "HTTP", held long-polls). The
 * first request gets it from node:http (`writeAnswer`); node's head for it, taken from the
 * response, and the body then make one Buffer, written as it is to every later request whose head
 * node would write alike: a keep-alive response not yet started, first in line on its socket.
 * Each of those costs one socket write instead of node building, validating and writing the same
 * head again (about half the cost of answering 1,000 held long-polls at once, docs/performance.md
 * measure 3). Anything else, or a Node whose responses keep their head elsewhere, takes the
 * ordinary path.
 */
export class ResponseReplay {
  readonly #status: number;
  readonly #base: readonly string[];
  readonly #headers: Readonly<Record<string, string>>;
  readonly #body: Buffer | string;
  /** Head and body as written to the first request; undefined until then, or when unusable. */
  #bytes: Buffer | undefined;
  #head: string | undefined;

  constructor(
    status: number,
    base: readonly string[],
    headers: Readonly<Record<string, string>>,
    body: Buffer | string,
  ) {
    this.#status = status;
    this.#base = base;
    this.#headers = headers;
    this.#body = body;
  }

  /** Writes the answer on `res`, whole. */
  send(res: ServerResponse): void {
    const bytes = this.#bytes;
    if (bytes !== undefined && replayable(res)) {
      const internals = res as unknown as ResponseInternals;
      res.statusCode = this.#status;
      // The head goes out with the body, in the write below: `end()` must take it as sent.
      internals._header = this.#head;
      internals._headerSent = true;
      res.socket!.write(bytes);
      res.end();
      return;
    }
    const first = this.#head === undefined && replayable(res);
    writeAnswer(res, this.#status, this.#base, this.#headers, this.#body);
    if (first) this.#capture(res);
  }

  /** Keeps what node wrote for `res`, when it can be told (its head is a string it sent). */
  #capture(res: ServerResponse): void {
    const { _header: head, _headerSent: sent } = res as unknown as ResponseInternals;
    if (typeof head !== 'string' || sent !== true) return;
    this.#head = head;
    const body =
      typeof this.#body === 'string' ? Buffer.from(this.#body) : (this.#body satisfies Buffer);
    this.#bytes = Buffer.concat([Buffer.from(head, 'latin1'), body]);
  }
}

/**
 * Whether node would write this response's head as it wrote the first's: it keeps the connection
 * open (so `Connection: keep-alive` and the same Keep-Alive), nothing of it is written yet, and it
 * is the response its socket is writing now (a pipelined request's waits its turn in node).
 */
function replayable(res: ServerResponse): boolean {
  const socket = res.socket;
  const { maxRequestsOnConnectionReached } = res as unknown as ResponseInternals;
  return (
    res.shouldKeepAlive &&
    maxRequestsOnConnectionReached !== true &&
    !res.headersSent &&
    res.writableLength === 0 &&
    socket !== null &&
    !socket.destroyed &&
    (socket as unknown as { _httpMessage?: unknown })._httpMessage === res
  );
}
