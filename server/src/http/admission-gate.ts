/**
 * Caps concurrent requests of one kind, so that a burst of initial syncs cannot exhaust the
 * database pool and a flood of long-polls cannot exhaust memory. Over the cap the request is
 * refused at once (503 with retry-after) instead of queueing.
 */
export class AdmissionGate {
  #active = 0;
  constructor(readonly limit: number) {}

  tryEnter(): boolean {
    if (this.#active >= this.limit) return false;
    this.#active++;
    return true;
  }

  leave(): void {
    this.#active--;
  }
}
