import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startCluster, type PostgresCluster } from '@sluice/local-postgres';
import { startStandby, type StandbyCluster } from './standby.js';

async function countRows(cluster: PostgresCluster): Promise<number> {
  const { rows } = await cluster.query<{ n: number }>('SELECT count(*)::int AS n FROM items');
  return rows[0]?.n ?? -1;
}

async function insertRows(cluster: PostgresCluster, count: number): Promise<void> {
  await cluster.query(
    'INSERT INTO items (label) SELECT $1 || i FROM generate_series(1, $2::int) AS i',
    ['row-', count],
  );
}

// The steps build on each other (replay, restart, then promotion), so they run in order.
describe('startStandby', () => {
  let primary: PostgresCluster | undefined;
  let standby: StandbyCluster | undefined;

  const started = (): { primary: PostgresCluster; standby: StandbyCluster } => {
    assert.ok(primary && standby, 'clusters did not start');
    return { primary, standby };
  };

  before(async () => {
    primary = await startCluster({ name: 'primary' });
    await primary.query('CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL)');
    await insertRows(primary, 100);
  });

  after(async () => {
    // Standby first: its destroy() drops its slot on the primary, which must still be up for that.
    await standby?.destroy();
    await primary?.destroy();
  });

  it('copies the primary and streams from it, read-only', async (t) => {
    assert.ok(primary);
    const startedAt = performance.now();
    standby = await startStandby(primary);
    t.diagnostic(
      `standby created and streaming in ${Math.round(performance.now() - startedAt)} ms`,
    );

    assert.equal(await countRows(standby), 100);
    const { rows } = await standby.query<{ recovering: boolean }>(
      'SELECT pg_is_in_recovery() AS recovering',
    );
    assert.equal(rows[0]?.recovering, true);
    await assert.rejects(standby.query("INSERT INTO items (label) VALUES ('nope')"), {
      code: '25006',
    });

    const slots = await primary.query<{ active: boolean }>(
      'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
      [standby.slotName],
    );
    assert.deepEqual(slots.rows, [{ active: true }]);
  });

  it('replays new writes on the primary', async () => {
    const { primary, standby } = started();
    await insertRows(primary, 50);
    await standby.waitForReplay();
    assert.equal(await countRows(standby), 150);
  });

  it('catches up after being killed and after a clean restart', async () => {
    const { primary, standby } = started();
    await standby.crash();
    // Written while the standby is down: the slot keeps this WAL for it.
    await insertRows(primary, 25);
    await standby.start();
    await standby.waitForStreaming();
    await standby.waitForReplay();
    assert.equal(await countRows(standby), 175);

    await standby.restart();
    await insertRows(primary, 25);
    await standby.waitForReplay();
    assert.equal(await countRows(standby), 200);
  });

  it('promotes to a writable primary that supports logical decoding', async () => {
    const { standby } = started();
    await standby.promote();

    const { rows } = await standby.query<{ recovering: boolean }>(
      'SELECT pg_is_in_recovery() AS recovering',
    );
    assert.equal(rows[0]?.recovering, false);
    await insertRows(standby, 10);
    assert.equal(await countRows(standby), 210);

    await standby.query("SELECT pg_create_logical_replication_slot('x', 'pgoutput')");
    const slots = await standby.query<{ plugin: string }>(
      "SELECT plugin FROM pg_replication_slots WHERE slot_name = 'x'",
    );
    assert.deepEqual(slots.rows, [{ plugin: 'pgoutput' }]);
    await standby.query("SELECT pg_drop_replication_slot('x')");
  });
});
