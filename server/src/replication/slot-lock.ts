import { createHash } from 'node:crypto';
import type { Client } from 'pg';
import { ReplicationError } from './replication-error.js';

/**
 * Two servers must never consume one slot. The session advisory lock taken here lives as long
 * as the replication connection that takes it, so it is released exactly when that stream dies.
 */
export async function lockSlot(client: Client, slotName: string): Promise<void> {
  const locked = await client.query<{ locked: boolean }>(
    `SELECT pg_try_advisory_lock(${advisoryLockKey(slotName)}) AS locked`,
  );
  if (!locked.rows[0]?.locked) {
    throw new ReplicationError(`slot ${slotName} is in use by another Sluice server`, '55006');
  }
}

/** A stable 63-bit lock key per slot name. */
function advisoryLockKey(slotName: string): string {
  const digest = createHash('sha256').update(`sluice:${slotName}`).digest();
  return (digest.readBigUInt64BE(0) & 0x7fffffffffffffffn).toString();
}
