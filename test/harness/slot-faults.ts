import type { Queryable } from './test-database.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface SlotRow {
  active_pid: number | null;
  wal_status: string | null;
}

async function slotRow(target: Queryable, slotName: string): Promise<SlotRow | undefined> {
  const { rows } = await target.query<SlotRow>(
    'SELECT active_pid, wal_status FROM pg_replication_slots WHERE slot_name = $1',
    [slotName],
  );
  return rows[0];
}

/**
 * Kills the walsender streaming from a slot, as an operator's pg_terminate_backend would.
 * Returns the pid that was terminated; throws when nobody was streaming from the slot.
 */
export async function terminateWalsender(target: Queryable, slotName: string): Promise<number> {
  const row = await slotRow(target, slotName);
  if (!row) throw new Error(`slot ${slotName} does not exist`);
  if (row.active_pid === null) throw new Error(`slot ${slotName} has no active walsender`);
  await target.query('SELECT pg_terminate_backend($1)', [row.active_pid]);
  return row.active_pid;
}

/** Drops a slot even while it is being streamed from (terminating the walsender first). */
export async function dropSlot(target: Queryable, slotName: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const row = await slotRow(target, slotName);
    if (!row) return;
    if (row.active_pid !== null) {
      await target.query('SELECT pg_terminate_backend($1)', [row.active_pid]);
    } else {
      const dropped = await target
        .query('SELECT pg_drop_replication_slot($1)', [slotName])
        .then(() => true)
        .catch(() => false); // a reconnecting server grabbed it again: terminate once more
      if (dropped) return;
    }
    await sleep(50);
  }
  throw new Error(`could not drop slot ${slotName}`);
}

/**
 * Invalidates a slot the way production loses one: `max_slot_wal_keep_size` is lowered, WAL is
 * written and switched past it, and a checkpoint removes the segments the slot still needed.
 * The previous setting is restored afterwards; the slot stays behind with `wal_status = 'lost'`.
 */
export async function invalidateSlot(target: Queryable, slotName: string): Promise<void> {
  const before = await target.query<{ setting: string }>(
    "SELECT current_setting('max_slot_wal_keep_size') AS setting",
  );
  await target.query("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
  await target.query('SELECT pg_reload_conf()');
  try {
    await target.query('CREATE TABLE IF NOT EXISTS sluice_wal_filler (payload text)');
    for (let attempt = 0; attempt < 20; attempt++) {
      await target.query(
        "INSERT INTO sluice_wal_filler SELECT repeat('x', 1000) FROM generate_series(1, 3000)",
      );
      await target.query('SELECT pg_switch_wal()');
      await target.query('CHECKPOINT');
      const row = await slotRow(target, slotName);
      if (!row) throw new Error(`slot ${slotName} does not exist`);
      if (row.wal_status === 'lost') return;
    }
    throw new Error(`slot ${slotName} did not become invalid`);
  } finally {
    await target.query('DROP TABLE IF EXISTS sluice_wal_filler');
    await target.query(
      `ALTER SYSTEM SET max_slot_wal_keep_size = '${before.rows[0]?.setting ?? '-1'}'`,
    );
    await target.query('SELECT pg_reload_conf()');
  }
}
