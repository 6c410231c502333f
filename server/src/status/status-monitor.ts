import type { ServerState } from '@sluice/protocol';

export interface StatusSnapshot {
  state: ServerState;
  since: Date;
  cause: string | undefined;
}

/**
 * The single place that decides the server's state (DESIGN.md invariant 5). Subsystems report
 * what they observe; HTTP handlers read `snapshot()` and never query the database for it.
 */
export class StatusMonitor {
  #snapshot: StatusSnapshot = { state: 'starting', since: new Date(), cause: undefined };
  readonly #listeners = new Set<(snapshot: StatusSnapshot) => void>();

  snapshot(): StatusSnapshot {
    return this.#snapshot;
  }

  /** The database answered a query, or failed to (with the reason). */
  reportDatabase(up: boolean, cause?: string): void {
    this.#transition(up ? 'live' : 'unavailable', cause);
  }

  onChange(listener: (snapshot: StatusSnapshot) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #transition(state: ServerState, cause: string | undefined): void {
    if (state === this.#snapshot.state) return;
    this.#snapshot = { state, since: new Date(), cause };
    for (const listener of this.#listeners) listener(this.#snapshot);
  }
}
