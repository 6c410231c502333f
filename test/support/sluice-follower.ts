// @sluice/client following a shape for the oracle tests, as CountingFollower does with the
// official client: its Shape's rows (the client's own materialisation), an exactly-once audit of
// every change the stream delivered, refetches, errors and mode changes. Any ShapeStream option
// can be passed, the live transport and a WebSocket constructor among them.
import { Shape, ShapeStream, type Mode, type Row, type ShapeStreamOptions } from '@sluice/client';
import { CONTROL, PARAMS } from '@sluice/protocol';
import { ChangeAudit } from './change-audit.js';

export class SluiceFollower {
  readonly stream: ShapeStream;
  readonly shape: Shape;
  readonly audit = new ChangeAudit();
  /** Real refetches (a 409 or a must-refetch frame), not the refreshes of fallback rows. */
  mustRefetches = 0;
  /** Fallback rows replacing the rows (must-refetch marked `fallback`). */
  fallbackRefreshes = 0;
  upToDates = 0;
  readonly errors: unknown[] = [];
  /** Every URL the stream fetched (shape and status requests), in order. */
  readonly requests: URL[] = [];
  /** Every mode the stream reported, with Date.now() when it did. */
  readonly modes: { mode: Mode; at: number }[] = [];
  readonly #abort = new AbortController();

  constructor(url: string, options: Omit<ShapeStreamOptions, 'url' | 'signal'>) {
    const fetchClient = options.fetchClient ?? fetch;
    this.stream = new ShapeStream({
      // Restarts take a second or two: retry quickly so tests converge promptly.
      backoffOptions: { initialDelay: 100, maxDelay: 1_000, multiplier: 1.5 },
      ...options,
      url,
      signal: this.#abort.signal,
      fetchClient: (input, init) => {
        this.requests.push(new URL(input instanceof Request ? input.url : input.toString()));
        return fetchClient(input, init);
      },
      onModeChange: (mode) => this.modes.push({ mode, at: Date.now() }),
    });
    this.stream.subscribe(
      (messages) => {
        this.audit.apply(messages);
        for (const message of messages) {
          const { control, fallback } = message.headers as { control?: string; fallback?: true };
          if (control === CONTROL.mustRefetch && fallback) this.fallbackRefreshes++;
          else if (control === CONTROL.mustRefetch) this.mustRefetches++;
          else if (control === CONTROL.upToDate) this.upToDates++;
        }
      },
      (error) => this.errors.push(error),
    );
    this.shape = new Shape(this.stream);
  }

  get rows(): Row[] {
    return this.shape.currentRows;
  }

  /** Live shape requests (`live=true`): long-polls. */
  get longPolls(): number {
    return this.requests.filter((url) => url.searchParams.get(PARAMS.live) === 'true').length;
  }

  /** The mode last reported. */
  get mode(): Mode | undefined {
    return this.modes.at(-1)?.mode;
  }

  close(): void {
    this.#abort.abort();
  }
}
