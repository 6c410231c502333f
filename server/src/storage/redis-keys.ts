/**
 * The Redis keys of a storage (docs/architecture.md, "Redis storage"). Every key of one shape
 * carries the hash tag `{<prefix>:<handle>}`, so in Redis Cluster they share a slot and one
 * script or MULTI can change several of them atomically. The storage's own keys are separate.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** Set of the stored shapes' handles. */
  get shapes(): string {
    return `${this.prefix}:shapes`;
  }

  /** Pub/sub channel of the servers sharing the storage (`StorageChannel`). */
  get channel(): string {
    return `${this.prefix}:events`;
  }

  /** String: the last writer epoch handed out (`claimWriter`). */
  get writerEpoch(): string {
    return `${this.prefix}:writer-epoch`;
  }

  record(name: string): string {
    return `${this.prefix}:record:${name}`;
  }

  shape(handle: string): ShapeKeys {
    return new ShapeKeys(`{${this.prefix}:${handle}}`);
  }
}

export class ShapeKeys {
  constructor(readonly tag: string) {}

  /** String: the shape's metadata (JSON). */
  get metadata(): string {
    return `${this.tag}:meta`;
  }

  /** Hash: `open` (number of the open chunk), `next` (next chunk number never used). */
  get log(): string {
    return `${this.tag}:log`;
  }

  /** List: one JSON descriptor per sealed chunk, in order. */
  get sealed(): string {
    return `${this.tag}:sealed`;
  }

  /** List: one `<offset> <json>` string per entry of chunk `number`. */
  chunk(number: number): string {
    return `${this.tag}:chunk:${number}`;
  }
}
