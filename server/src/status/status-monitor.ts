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
  #replicationUp = false;
  #databaseUp = true;
  readonly #listeners = new Set<(snapshot: StatusSnapshot) => void>();

  snapshot(): StatusSnapshot {
    return this.#snapshot;
  }

  /** The replication stream started streaming, or stopped (with the reason). */
  reportReplication(up: boolean, cause?: string): void {
    this.#replicationUp = up;
    this.#decide(cause);
  }

  /** The database answered a query, or could not be reached (with the reason). */
  reportDatabase(up: boolean, cause?: string): void {
    this.#databaseUp = up;
    this.#decide(cause);
  }

  onChange(listener: (snapshot: StatusSnapshot) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #decide(cause: string | undefined): void {
    const state: ServerState = !this.#databaseUp
      ? 'unavailable'
      : this.#replicationUp
        ? 'live'
        : 'starting';
    if (state === this.#snapshot.state) return;
    this.#snapshot = { state, since: new Date(), cause };
    for (const listener of this.#listeners) listener(this.#snapshot);
  }
}
