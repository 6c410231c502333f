import type { Client } from 'pg';
import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';

const keepText = (text: unknown) => text;

/** A replication message the parser could not read (see `TextPgoutputPlugin.parse`). */
export class UndecodableMessage {
  constructor(readonly error: unknown) {}
}

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

  /**
   * Never throws: the library calls this inside a socket event handler, where an exception
   * would crash the process. A message that cannot be decoded comes back as an
   * `UndecodableMessage`, and the stream that receives it ends and restarts from the slot.
   */
  override parse(buffer: Buffer): Pgoutput.Message {
    try {
      const message = super.parse(buffer);
      if (message.tag === 'relation') {
        for (const column of message.columns) column.parser = keepText;
      }
      return message;
    } catch (error) {
      return new UndecodableMessage(error) as unknown as Pgoutput.Message;
    }
  }

  override async start(client: Client, slotName: string, lastLsn: string): Promise<unknown> {
    await this.prepare(client);
    return super.start(client, slotName, lastLsn);
  }
}
