import { SluiceError } from '../errors/sluice-error.js';
import { AdmissionGate } from './admission-gate.js';
import { clientAddress, type RequestOrigin } from './client-address.js';
import { PerClientGate } from './per-client-gate.js';

/** How many shape requests may be answered at once (docs/configuration.md). */
export interface ShapeAdmissionLimits {
  maxConcurrentInitial: number;
  maxConcurrentLive: number;
  /** Held live requests of one client address (`clientAddress`). */
  maxLivePerClient: number;
  /** The header a trusted proxy puts the client's address in; unset: the connection's. */
  clientAddressHeader: string | undefined;
}

/** What a request counts against: the initial snapshot's gate, the live one, or neither. */
export interface AdmissionKind {
  initial: boolean;
  live: boolean;
}

/**
 * The gates shape requests count against, shared by every way a request reaches them (the
 * route, and held long-polls taken before it: `LongPollPark`). Entering returns the way out.
 */
export class ShapeAdmission {
  readonly #initial: AdmissionGate;
  readonly #live: AdmissionGate;
  readonly #livePerClient: PerClientGate;
  readonly #clientAddressHeader: string | undefined;

  constructor(limits: ShapeAdmissionLimits) {
    this.#initial = new AdmissionGate(limits.maxConcurrentInitial);
    this.#live = new AdmissionGate(limits.maxConcurrentLive);
    this.#livePerClient = new PerClientGate(limits.maxLivePerClient);
    this.#clientAddressHeader = limits.clientAddressHeader;
  }

  /**
   * Enters the gates `kind` counts against, or refuses with a 503 when one is full. An initial
   * request counts as such only while replication is up: in fallback, initial requests are
   * limited by distinct queries, and those that join a running query cost the database nothing.
   */
  enter(request: RequestOrigin, kind: AdmissionKind): () => void {
    const entered = this.#tryEnter(request, kind);
    if (typeof entered === 'function') return entered;
    throw new SluiceError(entered.code, entered.message);
  }

  /** As `enter`, but a full gate gives undefined. */
  tryEnter(request: RequestOrigin, kind: AdmissionKind): (() => void) | undefined {
    const entered = this.#tryEnter(request, kind);
    return typeof entered === 'function' ? entered : undefined;
  }

  #tryEnter(request: RequestOrigin, { initial, live }: AdmissionKind) {
    // One client's live requests count against its own cap before the shared one.
    const client = live ? clientAddress(request, this.#clientAddressHeader) : undefined;
    if (client !== undefined && !this.#livePerClient.tryEnter(client)) {
      const { limit } = this.#livePerClient;
      const message = `Too many concurrent live requests from this client (limit ${limit}); retry shortly`;
      return { code: 'SLUICE_ERR_OVERLOADED_PER_CLIENT', message } as const;
    }
    const gate = initial ? this.#initial : live ? this.#live : undefined;
    if (gate && !gate.tryEnter()) {
      if (client !== undefined) this.#livePerClient.leave(client);
      const kind = gate === this.#initial ? 'initial' : 'live';
      const message = `Too many concurrent ${kind} requests (limit ${gate.limit}); retry shortly`;
      return { code: 'SLUICE_ERR_OVERLOADED', message } as const;
    }
    return () => {
      gate?.leave();
      if (client !== undefined) this.#livePerClient.leave(client);
    };
  }
}
