import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ReplicationPhase } from '@sluice/protocol';
import type { StorageHealth } from '../storage/shape-storage.js';
import { SluiceMetrics } from './sluice-metrics.js';
import {
  decideState,
  StatusMonitor,
  type DatabaseHealth,
  type StateChange,
} from './status-monitor.js';

/** A server that reads no storage another writes. */
const ALONE = { reading: false, writerLive: false };

test('decideState: every combination of the facts', () => {
  const phases: ReplicationPhase[] = ['connecting', 'streaming', 'backoff'];
  const databases: DatabaseHealth[] = ['unknown', 'up', 'down'];
  const table: string[] = [];
  for (const replication of phases) {
    for (const attempted of [false, true]) {
      for (const database of databases) {
        const state = decideState({ replication, attempted, database, storage: 'up', ...ALONE });
        table.push(`${replication} ${attempted} ${database} → ${state}`);
      }
    }
  }
  assert.deepEqual(table, [
    'connecting false unknown → starting',
    'connecting false up → starting',
    'connecting false down → unavailable',
    'connecting true unknown → fallback',
    'connecting true up → fallback',
    'connecting true down → unavailable',
    'streaming false unknown → live',
    'streaming false up → live',
    'streaming false down → live',
    'streaming true unknown → live',
    'streaming true up → live',
    'streaming true down → live',
    'backoff false unknown → starting',
    'backoff false up → starting',
    'backoff false down → unavailable',
    'backoff true unknown → fallback',
    'backoff true up → fallback',
    'backoff true down → unavailable',
  ]);
});

test('decideState: a server reading what another writes is live while that writer is', () => {
  const facts = { replication: 'backoff', attempted: true, database: 'up', storage: 'up' } as const;
  assert.equal(decideState({ ...facts, reading: true, writerLive: true }), 'live');
  assert.equal(decideState({ ...facts, reading: true, writerLive: false }), 'fallback');
  assert.equal(
    decideState({ ...facts, storage: 'down', reading: true, writerLive: true }),
    'fallback',
  );
  assert.equal(
    decideState({ ...facts, database: 'down', reading: true, writerLive: false }),
    'unavailable',
  );
  // Its own replication (the lock refused) does not count, streaming or not.
  const streaming = { ...facts, replication: 'streaming' } as const;
  assert.equal(decideState({ ...streaming, reading: true, writerLive: false }), 'fallback');
});

test('decideState: a storage that does not answer is never live', () => {
  const storage = 'down';
  assert.equal(
    decideState({ replication: 'streaming', attempted: true, database: 'up', storage, ...ALONE }),
    'fallback',
  );
  assert.equal(
    decideState({ replication: 'streaming', attempted: true, database: 'down', storage, ...ALONE }),
    'unavailable',
  );
  assert.equal(
    decideState({ replication: 'connecting', attempted: false, database: 'up', storage, ...ALONE }),
    'starting',
  );
});

test('the storage going down and coming back moves the state, with its cause', () => {
  const { status } = monitor();
  status.replicationStreaming();
  assert.equal(status.current().state, 'live');
  status.storageUnreachable();
  assert.equal(status.current().state, 'fallback');
  assert.match(status.current().cause, /shape storage \(disk\) unreachable/);
  status.storageReachable();
  assert.equal(status.current().state, 'live');
});

test('a standby (the slot held by a server sharing the storage) is starting, not in fallback', () => {
  const { status } = monitor();
  const problem = { code: '55006', message: 'slot in use by another Sluice server' };
  status.replicationStandby(problem, new Date(Date.now() + 1_000));
  assert.equal(status.current().state, 'starting');
  assert.equal(status.document().replication.last_error?.code, '55006');
  status.replicationStreaming();
  assert.equal(status.current().state, 'live');
});

function monitor() {
  const logged: { level: string; object: object; message: string }[] = [];
  const storage: { health: StorageHealth } = {
    health: { backend: 'disk', state: 'up', breaker: 'closed' },
  };
  const status = new StatusMonitor({
    slotName: 'slot',
    shapeCount: () => 3,
    storageHealth: () => storage.health,
    log: {
      info: (object, message) => logged.push({ level: 'info', object, message }),
      warn: (object, message) => logged.push({ level: 'warn', object, message }),
    },
  });
  const changes: StateChange[] = [];
  status.onChange((change) => changes.push(change));
  return { status, changes, logged, storage };
}

test('an outage and its end: each transition once, with its cause', () => {
  const { status, changes, logged } = monitor();
  assert.equal(status.current().state, 'starting');
  status.databaseReachable();
  status.replicationStreaming();
  status.databaseReachable(); // repeated facts change nothing
  status.replicationStreaming();
  const retryAt = new Date(Date.now() + 1_000);
  status.replicationFailed({ code: '57P01', message: 'terminated' }, retryAt);
  status.replicationConnecting(); // a reconnect attempt does not leave fallback
  status.replicationFailed({ code: '57P01', message: 'terminated' }, retryAt);
  status.databaseUnreachable({ code: 'ECONNREFUSED', message: 'refused' });
  status.databaseReachable();
  status.replicationStreaming();
  assert.deepEqual(
    changes.map(({ from, to }) => `${from}→${to}`),
    [
      'starting→live',
      'live→fallback',
      'fallback→unavailable',
      'unavailable→fallback',
      'fallback→live',
    ],
  );
  assert.match(changes[1]?.cause ?? '', /57P01 terminated/);
  assert.match(changes[2]?.cause ?? '', /ECONNREFUSED refused/);
  assert.equal(logged.filter((entry) => entry.message.startsWith('server state')).length, 5);
  assert.deepEqual(
    logged.filter((entry) => entry.level === 'warn').map((entry) => entry.message),
    [
      'server state live → fallback',
      'server state fallback → unavailable',
      'server state unavailable → fallback',
    ],
  );
});

test('a first attempt that fails goes to fallback, not starting forever', () => {
  const { status } = monitor();
  status.replicationFailed({ code: '55000', message: 'wal_level is "replica"' }, new Date());
  assert.equal(status.current().state, 'fallback');
});

test('the status document', () => {
  const { status } = monitor();
  status.replicationStreaming();
  status.reportSlotPositions(120, 4_096);
  let doc = status.document();
  assert.equal(doc.status, 'live');
  assert.equal(doc.replication_available, true);
  assert.deepEqual(doc.replication, {
    state: 'streaming',
    slot: 'slot',
    lag_bytes: 120,
    retained_wal_bytes: 4_096,
    last_error: null,
    next_retry_at: null,
  });
  assert.deepEqual(doc.shapes, { state: 'up', count: 3 });
  assert.equal(doc.database.primary, 'up');

  const retryAt = new Date('2030-01-01T00:00:00.000Z');
  status.replicationFailed({ code: '55006', message: 'slot busy' }, retryAt);
  doc = status.document();
  assert.equal(doc.status, 'fallback');
  assert.equal(doc.replication_available, false);
  assert.equal(doc.replication.state, 'backoff');
  assert.equal(doc.replication.next_retry_at, '2030-01-01T00:00:00.000Z');
  assert.equal(doc.replication.last_error?.code, '55006');
  assert.equal(doc.shapes.state, 'read_only');
  assert.equal(doc.since, status.current().since.toISOString());

  status.databaseUnreachable({ code: 'ECONNREFUSED', message: 'refused' });
  doc = status.document();
  assert.equal(doc.status, 'unavailable');
  assert.equal(doc.database.primary, 'down');
  // The last error stays what replication last reported; an incident replaces it.
  status.replicationIncident({ code: '42704', message: 'slot missing' });
  assert.equal(status.document().replication.last_error?.code, '42704');
});

test('the storage in the status document and in /metrics, read when asked for', async () => {
  const { status, storage } = monitor();
  const metrics = new SluiceMetrics(
    status,
    () => ({ primary: { up: true, breaker: 'closed' }, replica: undefined }),
    () => ({ shapes: 0, logBytes: 0 }),
  );
  const scrape = async () =>
    (await metrics.registry.metrics())
      .split('\n')
      .filter((line) => line.startsWith('sluice_storage_'))
      .sort();
  assert.deepEqual(status.document().storage, {
    backend: 'disk',
    state: 'up',
    breaker: 'closed',
    instance: null,
    writer: null,
  });
  assert.deepEqual(await scrape(), [
    'sluice_storage_breaker_state{backend="disk"} 0',
    'sluice_storage_up{backend="disk"} 1',
  ]);

  // Breaker phases are spelt as database.breaker spells them.
  storage.health = { backend: 'redis', state: 'down', breaker: 'half-open' };
  status.reportStorageServers('b', 'a');
  assert.deepEqual(status.document().storage, {
    backend: 'redis',
    state: 'down',
    breaker: 'half_open',
    instance: 'b',
    writer: 'a',
  });
  assert.deepEqual(await scrape(), [
    'sluice_storage_breaker_state{backend="redis"} 1',
    'sluice_storage_up{backend="redis"} 0',
  ]);
  storage.health = { backend: 'redis', state: 'down', breaker: 'open' };
  assert.deepEqual(await scrape(), [
    'sluice_storage_breaker_state{backend="redis"} 2',
    'sluice_storage_up{backend="redis"} 0',
  ]);
});

test('listeners can stop listening', () => {
  const { status } = monitor();
  const seen: string[] = [];
  const stop = status.onChange(({ to }) => seen.push(to));
  status.replicationStreaming();
  stop();
  status.replicationFailed({ code: 'X', message: 'x' }, new Date());
  assert.deepEqual(seen, ['live']);
});
