import type { EventEmitter } from 'node:events';
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
 * publication and slot setup happen on the very connection that will stream
 * (docs/architecture.md invariant 4), so the lock is released exactly when that stream dies.
 */
export class TextPgoutputPlugin extends PgoutputPlugin {
  constructor(
    publicationName: string,
    private readonly prepare: (client: Client) => Promise<void>,
    private readonly onUnreadable: (error: unknown) => void,
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
    guardCopyData(client, this.onUnreadable);
    await this.prepare(client);
    return super.start(client, slotName, lastLsn);
  }
}

/**
 * The library reads each CopyData message (its XLogData and keepalive headers, then `parse`)
 * inside the socket's event handler, without bounds checks: a malformed message would throw
 * there and crash the process. Its handler is wrapped so that such an error goes to
 * `onUnreadable` instead, and the stream that received it ends and restarts from the slot.
 */
function guardCopyData(client: Client, onUnreadable: (error: unknown) => void): void {
  const connection = (client as unknown as { connection: EventEmitter }).connection;
  for (const listener of connection.listeners('copyData') as ((message: unknown) => void)[]) {
    connection.removeListener('copyData', listener);
    connection.on('copyData', (message: unknown) => {
      try {
        listener(message);
      } catch (error) {
        onUnreadable(error);
      }
    });
  }
}
