interface Entry<Key, Value> {
  key: Key;
  value: Promise<Value>;
}

/**
 * The last value built for each owner, shared by every caller that asks for it with an equal key
 * while it is being built and until the event-loop turn after it is built. Callers woken together
 * (the waiters of one flush) all ask before the build can resolve, so one build serves them all;
 * a caller that comes later, or with another key, builds anew. One value per owner at most, and
 * only that briefly: an idle owner keeps nothing (a value may be large), and an owner no longer
 * referenced takes its entry with it.
 */
export class SingleFlightCache<Owner extends object, Key, Value> {
  readonly #entries = new WeakMap<Owner, Entry<Key, Value>>();
  readonly #sameKey: (a: Key, b: Key) => boolean;

  constructor(sameKey: (a: Key, b: Key) => boolean) {
    this.#sameKey = sameKey;
  }

  /** The value for `key`, built by `build` unless the owner's last one has an equal key and holds. */
  get(owner: Owner, key: Key, build: () => Promise<Value>): Promise<Value> {
    const cached = this.#entries.get(owner);
    if (cached && this.#sameKey(cached.key, key)) return cached.value;
    const value = build();
    const entry = { key, value };
    this.#entries.set(owner, entry);
    const forget = () => {
      if (this.#entries.get(owner) === entry) this.#entries.delete(owner);
    };
    // Every caller woken with the others holds the promise by then; a failed build is not kept
    // for the next caller either.
    value.then(() => setImmediate(forget), forget);
    return value;
  }
}
