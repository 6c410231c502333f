/** A transaction the consumer has handed to shapes: enough to ask a snapshot whether it sees it. */
export interface RecentCommit {
  xid: number;
  commitLsn: bigint;
}

/** How long, and how many, received commits are remembered by default. */
const KEEP_MS = 30_000;
const KEEP_MAX = 100_000;

/**
 * The commits received in the last few seconds. Postgres sends a commit once its WAL is flushed,
 * which can be before new snapshots see it (under synchronous replication, until the standby
 * confirms). A shape registered right after such a commit would get it neither from replication
 * (already passed) nor from its snapshot: its snapshot waits until it sees them all.
 */
export class RecentCommits {
  readonly #entries: (RecentCommit & { at: number })[] = [];
  #start = 0;

  constructor(
    private readonly keepMs = KEEP_MS,
    private readonly keepMax = KEEP_MAX,
    private readonly now: () => number = Date.now,
  ) {}

  add(commit: RecentCommit): void {
    this.#entries.push({ ...commit, at: this.now() });
    this.#trim();
  }

  list(): RecentCommit[] {
    this.#trim();
    return this.#entries.slice(this.#start);
  }

  #trim(): void {
    const cutoff = this.now() - this.keepMs;
    while (
      this.#start < this.#entries.length &&
      (this.#entries.length - this.#start > this.keepMax ||
        (this.#entries[this.#start]?.at ?? Infinity) < cutoff)
    ) {
      this.#start++;
    }
    // Compact now and then rather than shifting on every commit.
    if (this.#start > 1_024 && this.#start * 2 > this.#entries.length) {
      this.#entries.splice(0, this.#start);
      this.#start = 0;
    }
  }
}
