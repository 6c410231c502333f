import type { ServerState } from '@sluice/protocol';

export interface StatusSnapshot {
  state: ServerState;
  since: Date;
  cause: string | undefined;
}

/**
 * The single place that decides the server's state (DESIGN.md invariant 5). Subsystems report
 * what they observe; HTTP handlers read `snapshot()` and never query the database for it. For
 * now the replication stream is the only reporter: `live` while it streams, `starting` before
 * and while it reconnects.
 */
export class StatusMonitor {
  #snapshot: StatusSnapshot = { state: 'starting', since: new Date(), cause: undefined };

  snapshot(): StatusSnapshot {
    return this.#snapshot;
  }

  /** The replication stream started streaming, or stopped (with the reason). */
  reportReplication(up: boolean, cause?: string): void {
    const state: ServerState = up ? 'live' : 'starting';
    if (state === this.#snapshot.state) return;
    this.#snapshot = { state, since: new Date(), cause };
  }
}
