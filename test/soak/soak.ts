// The soak (issue 5, docs/reliability.md): a real Sluice process under a steady write load while
// replication outages of every kind alternate every few seconds, for SOAK_MINUTES (default 30).
// At the end every follower must equal Postgres (the oracle) with no refetch (the slot always
// survives), and the server's memory must not have grown: the resident set of the last fifth of
// the run is compared with the first fifth. Prints a JSON summary; exits 1 on any failure.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@sluice/local-postgres';
import {
  startFaultProxy,
  startPostgres,
  terminateWalsender,
  type FaultProxy,
  type TestDatabase,
  type TestPostgres,
} from '@sluice/harness';
import { ChangeAudit } from '../support/change-audit.js';
import { CountingFollower } from '../support/counting-follower.js';
import { fetchStatus } from '../support/fallback-checks.js';
import { RawFollower } from '../support/raw-shape.js';
import { assertMatchesPostgres } from '../support/shape-oracle.js';
import { startServerProcess } from '../support/server-process.js';
import { Writer } from '../support/table-oracle.js';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 30);
const OUTAGE_EVERY_MS = 6_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Outage =
  'terminate walsender' | 'reset replication' | 'blackhole replication' | 'restart postgres';
const OUTAGES: Outage[] = [
  'terminate walsender',
  'reset replication',
  'blackhole replication',
  'terminate walsender',
  'reset replication',
  'restart postgres',
];

async function main(): Promise<void> {
  const pg = await startPostgres({ name: 'soak' });
  const db = await pg.createDatabase('soak');
  await db.query('CREATE TABLE items (id int PRIMARY KEY, v int)');
  const target = new URL(db.url);
  const proxy = await startFaultProxy({ host: target.hostname, port: Number(target.port) });
  const storageDir = await mkdtemp(join(tmpdir(), 'sluice-soak-'));
  const server = await startServerProcess({
    DATABASE_URL: db.url,
    SLUICE_REPLICATION_DATABASE_URL: proxy.url(db.url),
    SLUICE_PORT: String(await freePort()),
    SLUICE_STORAGE_DIR: storageDir,
    SLUICE_SLOT_NAME: db.slotName,
    SLUICE_PUBLICATION_NAME: db.publicationName,
    SLUICE_LONG_POLL_TIMEOUT_MS: '5000',
    SLUICE_REPLICATION_RETRY_MIN_MS: '200',
    SLUICE_REPLICATION_RETRY_MAX_MS: '2000',
    SLUICE_REPLICATION_LIVENESS_TIMEOUT_MS: '3000',
    SLUICE_LOG_LEVEL: 'error',
  });
  const url = `${server.baseUrl}/v1/shape`;
  const official = [
    new CountingFollower(url, { table: 'items' }),
    new CountingFollower(url, { table: 'items', where: 'v % 2 = 0' }),
  ];
  // Exactly once per key; rows moving in and out of the filtered shape are inserted again.
  const audits = official.map((follower) => ChangeAudit.of(follower.stream));
  const raw = new RawFollower(server.baseUrl, { table: 'items' });
  const writer = new Writer(db, { pauseMs: 20 });

  const started = Date.now();
  const deadline = started + MINUTES * 60_000;
  const memory: { atS: number; rssMb: number }[] = [];
  const outages = new Map<string, number>();
  const states = new Map<string, number>();
  let failures: string[] = [];
  let round = 0;
  try {
    while (Date.now() < deadline) {
      const kind = OUTAGES[round++ % OUTAGES.length] as Outage;
      outages.set(kind, (outages.get(kind) ?? 0) + 1);
      await causeOutage(kind, { pg, db, proxy });
      // Sample while the outage heals and the load goes on.
      for (let t = 0; t < OUTAGE_EVERY_MS; t += 1_000) {
        await sleep(1_000);
        const status = await fetchStatus(server.baseUrl).catch(() => undefined);
        if (status) states.set(status.status, (states.get(status.status) ?? 0) + 1);
      }
      const rss = await residentMb(server.baseUrl);
      if (rss !== undefined)
        memory.push({ atS: Math.round((Date.now() - started) / 1000), rssMb: rss });
    }
    proxy.setMode('pass');
    await writer.stop();
    await assertMatchesPostgres(
      db,
      { table: 'items' },
      () => [...(official[0]?.rows.values() ?? [])],
      120_000,
    );
    await assertMatchesPostgres(
      db,
      { table: 'items', where: 'v % 2 = 0' },
      () => [...(official[1]?.rows.values() ?? [])],
      120_000,
    );
    await assertMatchesPostgres(db, { table: 'items' }, () => [...raw.rows.values()], 120_000);
    for (const [i, follower] of official.entries()) {
      if (follower.mustRefetches !== 0)
        failures.push(`official ${i}: ${follower.mustRefetches} refetches`);
      const anomalies = audits[i]?.anomalies ?? [];
      if (anomalies.length > 0) failures.push(`official ${i}: ${anomalies.slice(0, 5).join('; ')}`);
    }
    if (raw.mustRefetches !== 0) failures.push(`raw: ${raw.mustRefetches} refetches`);
    if (raw.audit.anomalies.length > 0)
      failures.push(`raw: ${raw.audit.anomalies.length} anomalies`);
    if (raw.error) failures.push(`raw: ${raw.error.message}`);
  } catch (error) {
    failures = [...failures, (error as Error).message.slice(0, 2_000)];
  }
  if (memory.length < 5) failures.push(`only ${memory.length} memory samples`);
  const fifth = Math.max(1, Math.floor(memory.length / 5));
  const firstMax = Math.max(...memory.slice(0, fifth).map((m) => m.rssMb));
  const lastMax = Math.max(...memory.slice(-fifth).map((m) => m.rssMb));
  // Bounded memory: the last fifth may not exceed the first by more than a quarter.
  if (lastMax > firstMax * 1.25) failures.push(`memory grew: ${firstMax} MB → ${lastMax} MB`);
  const summary = {
    minutes: MINUTES,
    outages: Object.fromEntries(outages),
    statusSamples: Object.fromEntries(states),
    rowsCommitted: writer.committed,
    rssMb: {
      firstFifthMax: firstMax,
      lastFifthMax: lastMax,
      samples: memory.length,
      min: Math.min(...memory.map((m) => m.rssMb)),
      max: Math.max(...memory.map((m) => m.rssMb)),
    },
    failures,
  };
  console.log(JSON.stringify(summary, null, 2));
  for (const follower of official) follower.close();
  await raw.close();
  await writer.stop();
  await server.stop('SIGTERM');
  await proxy.close();
  await rm(storageDir, { recursive: true, force: true });
  await db.drop();
  await pg.stop();
  process.exit(failures.length === 0 ? 0 : 1);
}

async function causeOutage(
  kind: Outage,
  env: { pg: TestPostgres; db: TestDatabase; proxy: FaultProxy },
): Promise<void> {
  const { pg, db, proxy } = env;
  switch (kind) {
    case 'terminate walsender':
      await terminateWalsender(db, db.slotName).catch(() => undefined); // not streaming right now
      return;
    case 'reset replication':
      proxy.setMode('reset');
      await sleep(1_000);
      proxy.setMode('pass');
      return;
    case 'blackhole replication':
      proxy.setMode('blackhole');
      await sleep(4_000);
      proxy.setMode('pass');
      return;
    case 'restart postgres':
      await pg.restart();
      return;
  }
}

async function residentMb(baseUrl: string): Promise<number | undefined> {
  const text = await fetch(`${baseUrl}/metrics`)
    .then((r) => r.text())
    .catch(() => '');
  const match = /^sluice_process_resident_memory_bytes (\d+)/m.exec(text);
  return match?.[1] ? Math.round(Number(match[1]) / 1_048_576) : undefined;
}

await main();
