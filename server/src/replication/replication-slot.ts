import type { Client } from 'pg';
import type { Problem } from '../pg/describe-problem.js';
import type { PublishMode } from '../config/config-options.js';
import { ensurePublication } from '../pg/publication.js';
import { quoteLiteral } from '../pg/quote-literal.js';
import { quoteIdentifier } from '../pg/table-identifier.js';
import { ReplicationError } from './replication-error.js';
import { lockSlot } from './slot-lock.js';

export interface SlotSetup {
  slotName: string;
  publicationName: string;
  /** `manual`: the publication is the operator's; Sluice never creates it. */
  publish: PublishMode;
}

/**
 * Readies the replication connection to stream from the slot, in the order docs/architecture.md
 * invariant 4 sets: the lock, then the publication (created with SLUICE_PUBLISH=auto, required
 * with `manual`), then the slot. An invalidated slot is dropped. Returns why a new slot must be created (missing: 42704, invalidated: 55000), which
 * means continuity broke; undefined when the slot carries on.
 */
export async function claimSlot(
  client: Client,
  { slotName, publicationName, publish }: SlotSetup,
): Promise<Problem | undefined> {
  const walLevel = await client.query<{ wal_level: string }>('SHOW wal_level');
  if (walLevel.rows[0]?.wal_level !== 'logical') {
    throw new ReplicationError(
      `wal_level is "${walLevel.rows[0]?.wal_level}"; logical replication needs wal_level=logical`,
      '55000',
    );
  }
  await lockSlot(client, slotName);
  if (publish === 'auto') await ensurePublication(client, publicationName);
  else await requirePublication(client, publicationName);

  const slot = await client.query<{ wal_status: string | null }>(
    `SELECT wal_status FROM pg_replication_slots WHERE slot_name = ${quoteLiteral(slotName)}`,
  );
  if (slot.rows[0]?.wal_status === 'lost') {
    await client.query(`DROP_REPLICATION_SLOT ${quoteIdentifier(slotName)}`);
    return {
      code: '55000',
      message: `replication slot "${slotName}" was invalidated (Postgres removed WAL it still needed, see max_slot_wal_keep_size)`,
    };
  }
  if (slot.rowCount === 0) {
    return { code: '42704', message: `replication slot "${slotName}" does not exist` };
  }
  return undefined;
}

/**
 * With SLUICE_PUBLISH=manual the publication is the operator's: while it is missing, replication
 * stops here (`/v1/status` shows `PUBLICATION_MISSING`) and retries.
 */
async function requirePublication(client: Client, name: string): Promise<void> {
  const found = await client.query(
    `SELECT 1 FROM pg_publication WHERE pubname = ${quoteLiteral(name)}`,
  );
  if (found.rowCount === 0) {
    throw new ReplicationError(
      `publication ${quoteIdentifier(name)} does not exist, and Sluice creates none (SLUICE_PUBLISH=manual): run CREATE PUBLICATION ${quoteIdentifier(name)} FOR TABLE …; as the tables' owner`,
      'PUBLICATION_MISSING',
    );
  }
}

/** Slow on a busy database: Postgres waits for every running transaction to end first. */
export async function createSlot(client: Client, slotName: string): Promise<void> {
  await client.query(
    `CREATE_REPLICATION_SLOT ${quoteIdentifier(slotName)} LOGICAL pgoutput NOEXPORT_SNAPSHOT`,
  );
}
