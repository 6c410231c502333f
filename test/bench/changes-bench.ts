import pg from 'pg';
import { HEADERS, PATHS, parseLogOffset } from '@sluice/protocol';
import type { TestDatabase, TestPostgres } from '@sluice/harness';
import {
  removeStorage,
  startBenchSluice,
  waitUntilHealthy,
  walsenderStart,
  type BenchSluice,
} from './bench-sluice.js';
import {
  countOccurrences,
  cpuMs,
  createPgoutputSlot,
  dropSlot,
  expectStatus,
  forEachConcurrently,
  formatMs,
  formatRate,
  formatRatio,
  header,
  httpRequest,
  log,
  median,
  rssMb,
  scaled,
  sleep,
  type BenchConfig,
  type HttpResponse,
} from './bench-support.js';
import {
  findPgRecvlogical,
  pgRecvlogicalVersion,
  readWithLibrary,
  readWithPgRecvlogical,
} from './wal-baselines.js';

/**
 * Measure 2: replicated changes/s into shape logs, against consumers that read the same WAL and
 * do nothing with it.
 *
 * Method (per run and phase): Sluice is stopped, two baseline slots are made, the workload is
 * committed (N single-row inserts, 100 per transaction), then the same WAL is read three times
 * from a standing start: by pg-logical-replication in this process, by pg_recvlogical (when
 * installed), and by Sluice, restarted on its own slot, until its shape logs hold every change.
 * Reading pre-written WAL measures what each consumer can sustain, not how fast the workload
 * could be generated on the same two cores.
 *
 * Phase (a): one shape on one table. Phase (b): 1,000 shapes, one per table: where clauses are
 * not supported yet, so "1,000 shapes that each receive their own rows" is built from a table
 * LIST-partitioned into 1,000 partitions (each a table of its own to Postgres's replication and
 * to Sluice), with a shape on every partition. Each 100-row transaction then touches 100 shapes.
 */
export interface ChangesPhaseResult {
  label: string;
  shapes: number;
  changes: number;
  writePerS: number;
  sluicePerS: number;
  libraryPerS: number;
  recvPerS: number | undefined;
  /**
   * Median of the per-run ratios Sluice ÷ pg_recvlogical when it exists, else Sluice ÷ library
   * consumer (all read the same WAL within a few seconds of each other).
   */
  ratio: number;
  ratioLibrary: number;
  sluiceMs: number;
  /** Median CPU time of the Sluice process from listening until caught up. */
  serverCpuMs: number | undefined;
}

/** Where the measured Sluice keeps its shape logs. */
export type ChangesStorage = { backend: 'disk' } | { backend: 'redis'; url: string };

export interface ChangesResult {
  storage: ChangesStorage['backend'];
  phases: ChangesPhaseResult[];
  baselineName: string;
  shapesCreated: number;
  shapeSetupMs: number;
  serverRssMb: number | undefined;
  verified: string;
}

interface PhaseSamples {
  write: number[];
  sluice: number[];
  library: number[];
  recv: number[];
  cpu: number[];
  ratio: number[];
  ratioLibrary: number[];
}

const ONE = 'bench_one';
const MANY = 'bench_many';
const PER_TRANSACTION = 100;

export async function benchChanges(
  postgres: TestPostgres,
  config: BenchConfig,
  storage: ChangesStorage = { backend: 'disk' },
): Promise<ChangesResult> {
  const redis = storage.backend === 'redis';
  // The Sluice under test, with its shape logs on the local disk or in Redis.
  const env: Record<string, string> = redis
    ? { SLUICE_STORAGE: 'redis', SLUICE_REDIS_URL: storage.url, SLUICE_REDIS_KEY_PREFIX: 'bench' }
    : {};
  const shapes = scaled(config, 1_000, 10);
  const changes = Math.ceil(scaled(config, 100_000, 1_000) / PER_TRANSACTION) * PER_TRANSACTION;
  log(
    `\n## 2. Replicated changes/s into shape logs${redis ? ' in Redis' : ''} (${changes.toLocaleString('en')} inserts, ${PER_TRANSACTION} per transaction)`,
  );
  const recvlogical = findPgRecvlogical();
  const baselineName = recvlogical
    ? await pgRecvlogicalVersion(recvlogical)
    : 'pg-logical-replication consumer';
  log(
    `baseline: ${baselineName}${recvlogical ? ` at ${recvlogical}` : ' (no pg_recvlogical found)'}`,
  );

  const db = await postgres.createDatabase(redis ? 'bench_changes_redis' : 'bench_changes');
  let sluice: BenchSluice | undefined;
  let storageDir: string | undefined;
  try {
    await createTables(db, shapes);
    sluice = await startBenchSluice(db, { env });
    storageDir = sluice.storageDir;
    await waitUntilHealthy(sluice.baseUrl);

    const setupStarted = performance.now();
    const tables = [ONE, ...partitionNames(shapes)];
    const firstUrl = sluice.baseUrl;
    await forEachConcurrently(tables, 8, async (table) => {
      const response = await httpRequest(`${firstUrl}${PATHS.shape}?table=${table}&offset=-1`);
      expectStatus(response, 200, `creating the shape of ${table}`);
    });
    const shapeSetupMs = performance.now() - setupStarted;
    const serverRssMb = await rssMb(sluice.pid);
    log(
      `${tables.length} shapes created in ${formatMs(shapeSetupMs)}; server RSS ${serverRssMb ?? '?'} MB`,
    );

    let nextId = 1;
    const samples = new Map<string, PhaseSamples>();
    for (let run = 1; run <= config.runs; run++) {
      for (const phase of ['a', 'b'] as const) {
        const label =
          (phase === 'a' ? '(a) 1 shape' : `(b) ${shapes} shapes`) + (redis ? ', Redis' : '');
        const firstId = nextId;
        nextId += changes;
        const libSlot = `bench_lib_${run}${phase}`;
        const recvSlot = `bench_recv_${run}${phase}`;

        await sluice.stop();
        await createPgoutputSlot(db, libSlot);
        if (recvlogical) await createPgoutputSlot(db, recvSlot);

        const writeMs = await writeWorkload(
          db,
          phase === 'a' ? ONE : MANY,
          firstId,
          changes,
          shapes,
        );
        const library = await readWithLibrary(db.url, libSlot, db.publicationName, changes);
        await dropSlot(db, libSlot);
        let recvMs: number | undefined;
        if (recvlogical) {
          recvMs = (
            await readWithPgRecvlogical(
              recvlogical,
              db.url,
              recvSlot,
              db.publicationName,
              library.finalEndLsnText,
            )
          ).ms;
          await dropSlot(db, recvSlot);
        }

        sluice = await startBenchSluice(db, { storageDir, env });
        const cpuBefore = await cpuMs(sluice.pid);
        const done = await waitForSluice(
          sluice.baseUrl,
          phase,
          library.finalCommitLsn,
          library.finalEndLsn,
        );
        const cpuAfter = await cpuMs(sluice.pid);
        const streamStart = await walsenderStart(db);
        const sluiceMs = done - streamStart;
        if (phase === 'b') {
          const lastTxFirstId = firstId + changes - PER_TRANSACTION;
          await checkFinalShapes(sluice.baseUrl, lastTxFirstId, shapes, library.finalCommitLsn);
        }

        const perS = (ms: number) => changes / (ms / 1000);
        const entry: PhaseSamples = samples.get(label) ?? {
          write: [],
          sluice: [],
          library: [],
          recv: [],
          cpu: [],
          ratio: [],
          ratioLibrary: [],
        };
        if (cpuBefore !== undefined && cpuAfter !== undefined) entry.cpu.push(cpuAfter - cpuBefore);
        samples.set(label, entry);
        entry.write.push(perS(writeMs));
        entry.sluice.push(perS(sluiceMs));
        entry.library.push(perS(library.ms));
        if (recvMs !== undefined) entry.recv.push(perS(recvMs));
        entry.ratio.push((recvMs ?? library.ms) / sluiceMs);
        entry.ratioLibrary.push(library.ms / sluiceMs);
        log(
          `run ${run}/${config.runs} ${label}: Postgres wrote ${formatRate(perS(writeMs))}/s | ` +
            `library consumer ${formatRate(perS(library.ms))}/s (${formatMs(library.ms)})` +
            (recvMs !== undefined
              ? ` | pg_recvlogical ${formatRate(perS(recvMs))}/s (${formatMs(recvMs)})`
              : '') +
            ` | Sluice ${formatRate(perS(sluiceMs))}/s (${formatMs(sluiceMs)}, server CPU ${formatMs(entry.cpu.at(-1) ?? NaN)})` +
            ` | ratio ${formatRatio((recvMs ?? library.ms) / sluiceMs)}`,
        );
      }
    }

    const verified = await verifyLogs(db, sluice.baseUrl, shapes);
    log(`verified: ${verified}`);
    const phases = [...samples].map(([label, s]): ChangesPhaseResult => {
      const sluicePerS = median(s.sluice);
      const libraryPerS = median(s.library);
      const recvPerS = s.recv.length > 0 ? median(s.recv) : undefined;
      return {
        label,
        shapes: label.startsWith('(a)') ? 1 : shapes,
        changes,
        writePerS: median(s.write),
        sluicePerS,
        libraryPerS,
        recvPerS,
        ratio: median(s.ratio),
        ratioLibrary: median(s.ratioLibrary),
        sluiceMs: (changes / sluicePerS) * 1000,
        serverCpuMs: s.cpu.length > 0 ? median(s.cpu) : undefined,
      };
    });
    return {
      storage: storage.backend,
      phases,
      baselineName,
      shapesCreated: shapes + 1,
      shapeSetupMs,
      serverRssMb,
      verified,
    };
  } finally {
    await sluice?.stop();
    if (storageDir) await removeStorage(storageDir);
    await db.drop();
  }
}

function partitionNames(shapes: number): string[] {
  return Array.from({ length: shapes }, (_, i) => `${MANY}_${String(i).padStart(4, '0')}`);
}

const COLUMNS_SQL = `title text NOT NULL, n int NOT NULL, ts timestamptz NOT NULL, payload jsonb NOT NULL`;
const VALUES_SQL = `'title ' || md5(g::text), (g * 7919) % 100000, now(),
                    jsonb_build_object('k', g % 100, 'tag', substr(md5((g * 3)::text), 1, 12))`;

/**
 * The tables, already in Sluice's publication with REPLICA IDENTITY FULL (what Sluice would do
 * itself on the first request; done here in two statements instead of 1,000 round trips).
 */
async function createTables(db: TestDatabase, shapes: number): Promise<void> {
  await db.query(`CREATE TABLE ${ONE} (id bigint PRIMARY KEY, ${COLUMNS_SQL})`);
  await db.query(
    `CREATE TABLE ${MANY} (id bigint NOT NULL, bucket int NOT NULL, ${COLUMNS_SQL},
                           PRIMARY KEY (bucket, id)) PARTITION BY LIST (bucket)`,
  );
  const names = partitionNames(shapes);
  await db.query(`DO $$
    BEGIN
      FOR i IN 0..${shapes - 1} LOOP
        EXECUTE format('CREATE TABLE ${MANY}_%s PARTITION OF ${MANY} FOR VALUES IN (%s)', lpad(i::text, 4, '0'), i);
        EXECUTE format('ALTER TABLE ${MANY}_%s REPLICA IDENTITY FULL', lpad(i::text, 4, '0'));
      END LOOP;
    END $$`);
  await db.query(`ALTER TABLE ${ONE} REPLICA IDENTITY FULL`);
  await db.query(
    `CREATE PUBLICATION ${db.publicationName} FOR TABLE ${[ONE, ...names].join(', ')}`,
  );
}

/** N inserts, 100 per transaction (autocommit statements), ids from `firstId`. */
async function writeWorkload(
  db: TestDatabase,
  table: string,
  firstId: number,
  changes: number,
  shapes: number,
): Promise<number> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const sql =
      table === ONE
        ? `INSERT INTO ${ONE} (id, title, n, ts, payload)
           SELECT g, ${VALUES_SQL} FROM generate_series($1::bigint, $2::bigint) g`
        : `INSERT INTO ${MANY} (id, bucket, title, n, ts, payload)
           SELECT g, (g % ${shapes})::int, ${VALUES_SQL} FROM generate_series($1::bigint, $2::bigint) g`;
    const started = performance.now();
    for (let from = firstId; from < firstId + changes; from += PER_TRANSACTION) {
      await client.query(sql, [from, from + PER_TRANSACTION - 1]);
    }
    return performance.now() - started;
  } finally {
    await client.end();
  }
}

/**
 * Polls until Sluice has every change durably in its logs; resolves the wall-clock time then.
 * (a): the shape's own last offset reaches the final commit. (b): `global_last_seen_lsn` (the
 * position every shape log has durably stored) reaches the end of the final commit.
 */
async function waitForSluice(
  baseUrl: string,
  phase: 'a' | 'b',
  finalCommitLsn: bigint,
  finalEndLsn: bigint,
): Promise<number> {
  const deadline = Date.now() + 600_000;
  for (;;) {
    const response = await httpRequest(`${baseUrl}${PATHS.shape}?table=${ONE}&offset=now`);
    // 503: not serving yet (replication not checked since the restart); ask again.
    if (response.status !== 503 && caughtUp(response, phase, finalCommitLsn, finalEndLsn)) {
      return Date.now();
    }
    if (Date.now() > deadline) throw new Error('Sluice did not catch up within 10 minutes');
    await sleep(10);
  }
}

function caughtUp(
  response: HttpResponse,
  phase: 'a' | 'b',
  finalCommitLsn: bigint,
  finalEndLsn: bigint,
): boolean {
  expectStatus(response, 200, 'offset=now');
  if (phase === 'a') {
    const offset = parseLogOffset(header(response, HEADERS.offset) ?? '');
    return offset !== undefined && offset.tx >= finalCommitLsn;
  }
  const body = JSON.parse(response.body.toString()) as {
    headers: { global_last_seen_lsn?: string };
  }[];
  const seen = body.at(-1)?.headers.global_last_seen_lsn;
  return seen !== undefined && BigInt(seen) >= finalEndLsn;
}

/** The shapes the final transaction touched hold it (a check on `global_last_seen_lsn`). */
async function checkFinalShapes(
  baseUrl: string,
  firstIdOfLastTx: number,
  shapes: number,
  finalCommitLsn: bigint,
): Promise<void> {
  const buckets = new Set<number>();
  for (let id = firstIdOfLastTx; id < firstIdOfLastTx + PER_TRANSACTION; id++)
    buckets.add(id % shapes);
  await forEachConcurrently([...buckets], 8, async (bucket) => {
    const table = `${MANY}_${String(bucket).padStart(4, '0')}`;
    const response = await httpRequest(`${baseUrl}${PATHS.shape}?table=${table}&offset=now`);
    const offset = parseLogOffset(header(response, HEADERS.offset) ?? '');
    if (!offset || offset.tx < finalCommitLsn) {
      throw new Error(`${table} lacks the final transaction although global_last_seen_lsn has it`);
    }
  });
}

const INSERT_MARK = Buffer.from('"operation":"insert"');

/** Every shape log, read from the start like a client, holds exactly the rows of its table. */
async function verifyLogs(db: TestDatabase, baseUrl: string, shapes: number): Promise<string> {
  const counts = await db.query<{ table: string; rows: string }>(
    `SELECT tableoid::regclass::text AS table, count(*)::text AS rows FROM ${MANY} GROUP BY 1
     UNION ALL SELECT '${ONE}', count(*)::text FROM ${ONE}`,
  );
  const expected = new Map(counts.rows.map((row) => [row.table, Number(row.rows)]));
  let total = 0;
  const tables = [ONE, ...partitionNames(shapes)];
  await forEachConcurrently(tables, 8, async (table) => {
    let response = await httpRequest(`${baseUrl}${PATHS.shape}?table=${table}&offset=-1`);
    const handle = header(response, HEADERS.handle) ?? '';
    let rows = 0;
    for (;;) {
      expectStatus(response, 200, `reading ${table}`);
      rows += countOccurrences(response.body, INSERT_MARK);
      if (header(response, HEADERS.upToDate) !== undefined) break;
      response = await httpRequest(
        `${baseUrl}${PATHS.shape}?table=${table}&handle=${handle}&offset=${header(response, HEADERS.offset)}`,
      );
    }
    if (rows !== (expected.get(table) ?? 0)) {
      throw new Error(`shape ${table} holds ${rows} rows, the table ${expected.get(table) ?? 0}`);
    }
    total += rows;
  });
  return `${tables.length} shape logs read from offset -1 hold exactly their tables' ${total.toLocaleString('en')} rows`;
}
