import type { EventEmitter } from 'node:events';
import type { Client } from 'pg';
import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { isRowMessage, readRowMessage } from './pgoutput-rows.js';

/**
 * pgoutput with values kept as Postgres text. The library converts each value with
 * node-postgres type parsers (timestamps lose microseconds, jsonb becomes an object, int8 a
 * number); the wire needs the exact text output. So rows (Insert, Update, Delete) are read by
 * `readRowMessage`, which keeps every value byte-exact, with the Relation messages this plugin
 * has passed on; every other message is the library's.
 *
 * `prepare` runs on the replication connection before START_REPLICATION: the advisory lock,
 * publication and slot setup happen on the very connection that will stream
 * (docs/architecture.md invariant 4), so the lock is released exactly when that stream dies.
 */
export class TextPgoutputPlugin extends PgoutputPlugin {
  /** The Relation messages received, by OID: a row message names its relation's. */
  readonly #relations = new Map<number, Pgoutput.MessageRelation>();

  constructor(
    publicationName: string,
    private readonly prepare: (client: Client) => Promise<void>,
    private readonly onUnreadable: (error: unknown) => void,
  ) {
    super({ protoVersion: 1, publicationNames: [publicationName] });
  }

  override parse(buffer: Buffer): Pgoutput.Message {
    if (isRowMessage(buffer)) return readRowMessage(buffer, this.#relations);
    const message = super.parse(buffer);
    if (message.tag === 'relation') this.#relations.set(message.relationOid, message);
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
