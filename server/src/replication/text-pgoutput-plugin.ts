import type { Client } from 'pg';
import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';

const keepText = (text: unknown) => text;

/**
 * pgoutput with values kept as Postgres text. The library converts each value with
 * node-postgres type parsers (timestamps lose microseconds, jsonb becomes an object, int8 a
 * number); the wire needs the exact text output. The parser caches every Relation message and
 * reads later tuples with that relation's per-column `parser`, so replacing those parsers with
 * the identity as the Relation message passes through keeps every value byte-exact.
 *
 * `prepare` runs on the replication connection before START_REPLICATION: the advisory lock,
 * publication and slot setup happen on the very connection that will stream (DESIGN.md
 * invariant 4), so the lock is released exactly when that stream dies.
 */
export class TextPgoutputPlugin extends PgoutputPlugin {
  constructor(
    publicationName: string,
    private readonly prepare: (client: Client) => Promise<void>,
  ) {
    super({ protoVersion: 1, publicationNames: [publicationName] });
  }

  override parse(buffer: Buffer): Pgoutput.Message {
    const message = super.parse(buffer);
    if (message.tag === 'relation') {
      for (const column of message.columns) column.parser = keepText;
    }
    return message;
  }

  override async start(client: Client, slotName: string, lastLsn: string): Promise<unknown> {
    await this.prepare(client);
    return super.start(client, slotName, lastLsn);
  }
}
