/**
 * Caps concurrent requests of one client (by address), so that one client cannot take every
 * slot of a shared limit. Over its cap the request is refused at once instead of queueing.
 */
export class PerClientGate {
  readonly #active = new Map<string, number>();
  constructor(readonly limit: number) {}

  tryEnter(client: string): boolean {
    const active = this.#active.get(client) ?? 0;
    if (active >= this.limit) return false;
    this.#active.set(client, active + 1);
    return true;
  }

  leave(client: string): void {
    const active = (this.#active.get(client) ?? 1) - 1;
    // Clients come and go: only those with requests in flight are remembered.
    if (active > 0) this.#active.set(client, active);
    else this.#active.delete(client);
  }
}
