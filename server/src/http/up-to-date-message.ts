import { CONTROL, type UpToDateMessage } from '@sluice/protocol';

/**
 * The `up-to-date` control message as JSON text, with the replication position every shape has
 * durably seen (docs/protocol.md §4).
 */
export function upToDateMessage(lastSeenLsn: bigint): string {
  const message: UpToDateMessage = {
    headers: { control: CONTROL.upToDate, global_last_seen_lsn: lastSeenLsn.toString() },
  };
  return JSON.stringify(message);
}
