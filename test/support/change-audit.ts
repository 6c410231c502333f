import type { Message, Row, ShapeStream } from '@electric-sql/client';

/** The parts of a message the audit reads (official client messages and raw wire messages). */
interface AuditedMessage {
  key?: string;
  headers: object;
}

/**
 * Checks that a stream of change messages is exactly-once per key, whatever the workload: an
 * insert of a key the client already holds is a duplicate delivery; an update or delete of a key it
 * does not hold means an insert was lost (or a delete came twice). A key may legitimately be
 * inserted again after its delete, which counting inserts alone would call a duplicate.
 * `must-refetch` starts over.
 */
export class ChangeAudit {
  readonly #present = new Set<string>();
  readonly anomalies: string[] = [];
  changes = 0;

  /** Audits every batch a stream delivers from now on. */
  static of(stream: ShapeStream<Row>): ChangeAudit {
    const audit = new ChangeAudit();
    stream.subscribe((messages: Message<Row>[]) => audit.apply(messages));
    return audit;
  }

  apply(messages: readonly AuditedMessage[]): void {
    for (const { key, headers } of messages) {
      const { operation, control } = headers as { operation?: string; control?: string };
      if (control === 'must-refetch') this.reset();
      if (key === undefined) continue;
      this.changes++;
      const held = this.#present.has(key);
      switch (operation) {
        case 'insert':
          if (held) this.#note(`insert of ${key}, which the client already holds`);
          this.#present.add(key);
          break;
        case 'update':
          if (!held) this.#note(`update of ${key}, which the client does not hold`);
          break;
        case 'delete':
          if (!held) this.#note(`delete of ${key}, which the client does not hold`);
          this.#present.delete(key);
          break;
        default:
          this.#note(`change of ${key} with operation ${String(operation)}`);
      }
    }
  }

  reset(): void {
    this.#present.clear();
  }

  #note(anomaly: string): void {
    // Keep the report readable: the first few tell what went wrong.
    if (this.anomalies.length < 20) this.anomalies.push(anomaly);
  }
}
