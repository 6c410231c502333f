import pg from 'pg';
import { HEADERS, PATHS } from '@sluice/protocol';
import type { TestPostgres } from '@sluice/harness';
import {
  removeStorage,
  startBenchSluice,
  waitUntilHealthy,
  type BenchSluice,
} from './bench-sluice.js';
import {
  expectStatus,
  forEachConcurrently,
  formatMs,
  header,
  httpRequest,
  log,
  percentile,
  scaled,
  sleep,
  type BenchConfig,
} from './bench-support.js';

/**
 * Measure 9: what a change in a subquery's inner table costs (docs/protocol.md §13). Shapes are
 * `author IN (SELECT id FROM bench_sq_users WHERE active AND id >= $1)` on `bench_sq_posts`
 * (with `$1` = 0, -1, -2, … all select the same users, so the shapes are distinct and alike).
 *   (a) rows moved: one users row becomes active and 1, 100 or 1,000 posts move in; commit →
 *       the follower of one shape has the move-in and every row. Baselines, same run: a plain
 *       shape (`author = $1`) getting the same number of rows inserted in one transaction, and
 *       the refresh's two queries run directly in Postgres.
 *   (b) shapes: 1, 10 and 100 subquery shapes read the same inner table; a one-row move's
 *       commit → client latency at the last shape made (the writer refreshes the shapes in
 *       turn), and the time per inner change over a burst of single-row commits (a refresh
 *       whose snapshot sees later commits of the burst spares them theirs). Baseline: a plain
 *       shape's single-row inserts, latency and time per change.
 */
export interface SubqueryMovePoint {
  rows: number;
  p50Ms: number;
  p99Ms: number;
  plainP50Ms: number;
  plainP99Ms: number;
  /** Median of the refresh's queries (results, moved-in rows) run directly, one transaction. */
  postgresMs: number;
  samples: number;
}

export interface SubqueryShapesPoint {
  shapes: number;
  p50Ms: number;
  p99Ms: number;
  perChangeMs: number;
  samples: number;
}

export interface SubqueryBenchResult {
  moves: SubqueryMovePoint[];
  shapes: SubqueryShapesPoint[];
  plain: { p50Ms: number; p99Ms: number; perChangeMs: number };
  burst: number;
}

const USERS = 'bench_sq_users';
const POSTS = 'bench_sq_posts';
/** [user, posts]: users 1, 2 and 3 write 1, 100 and 1,000 posts; users from 10 on one each. */
const FANOUT: [number, number][] = [
  [1, 1],
  [2, 100],
  [3, 1_000],
];
const FILLER_USERS = 1_000;
/** The plain shapes' author: no user, so no subquery shape ever holds its rows. */
const PLAIN_AUTHOR = -1;
const WHERE = `author IN (SELECT id FROM ${USERS} WHERE active AND id >= $1)`;
const SERVER_ENV = { SLUICE_MAX_CONCURRENT_INITIAL: '16' };

export async function benchSubquery(
  postgres: TestPostgres,
  config: BenchConfig,
): Promise<SubqueryBenchResult> {
  const samples = scaled(config, 20, 5) * config.runs;
  const burst = scaled(config, 50, 10);
  const shapeCounts = [1, 10, scaled(config, 100, 20)];
  log(
    `\n## 9. Subquery shapes: a change in the inner table (1, 100, 1,000 rows moved; ` +
      `${shapeCounts.join(', ')} shapes; ${samples} samples per point, bursts of ${burst})`,
  );
  const db = await postgres.createDatabase('bench_subquery');
  let sluice: BenchSluice | undefined;
  const writer = new pg.Client({ connectionString: db.url });
  try {
    await db.query(
      `CREATE TABLE ${USERS} (id int PRIMARY KEY, active boolean NOT NULL);
       CREATE TABLE ${POSTS} (id bigint PRIMARY KEY, author int NOT NULL, title text NOT NULL);
       CREATE INDEX ON ${POSTS} (author);
       INSERT INTO ${USERS} VALUES (1, false), (2, false), (3, false);
       INSERT INTO ${USERS} SELECT i, i % 2 = 0 FROM generate_series(10, ${9 + FILLER_USERS}) i;
       INSERT INTO ${POSTS} SELECT g, 1, 'p' FROM generate_series(1, 1) g;
       INSERT INTO ${POSTS} SELECT g, 2, 'p' FROM generate_series(101, 200) g;
       INSERT INTO ${POSTS} SELECT g, 3, 'p' FROM generate_series(1001, 2000) g;
       INSERT INTO ${POSTS} SELECT 100000 + i, i, 'p' FROM generate_series(10, ${9 + FILLER_USERS}) i;
       ANALYZE;`,
    );
    sluice = await startBenchSluice(db, { env: SERVER_ENV });
    await waitUntilHealthy(sluice.baseUrl);
    await writer.connect();
    const baseUrl = sluice.baseUrl;
    let nextId = 1_000_000;

    // (a) rows moved, one subquery shape, against a plain shape getting as many rows.
    const follower = await Follower.open(subqueryUrl(baseUrl, 0));
    const plain = await Follower.open(plainUrl(baseUrl));
    const moves: SubqueryMovePoint[] = [];
    for (const [user, rows] of FANOUT) {
      const latencies: number[] = [];
      const plainLatencies: number[] = [];
      const postgresMs: number[] = [];
      for (let i = 0; i < samples; i++) {
        latencies.push(
          await follower.timeCommit(
            () => writer.query(`UPDATE ${USERS} SET active = true WHERE id = $1`, [user]),
            (seen) => seen.moveIns >= 1 && seen.inserts >= rows,
          ),
        );
        postgresMs.push(await refreshQueries(writer, user));
        await follower.timeCommit(
          () => writer.query(`UPDATE ${USERS} SET active = false WHERE id = $1`, [user]),
          (seen) => seen.moveOuts >= 1,
        );
        const first = nextId;
        nextId += rows;
        plainLatencies.push(
          await plain.timeCommit(
            () =>
              writer.query(
                `INSERT INTO ${POSTS} SELECT g, ${PLAIN_AUTHOR}, 'p' FROM generate_series($1::bigint, $2::bigint) g`,
                [first, first + rows - 1],
              ),
            (seen) => seen.inserts >= rows,
          ),
        );
        await plain.timeCommit(
          () => writer.query(`DELETE FROM ${POSTS} WHERE author = ${PLAIN_AUTHOR}`),
          (seen) => seen.deletes >= rows,
        );
      }
      const point: SubqueryMovePoint = {
        rows,
        p50Ms: percentile(latencies, 50),
        p99Ms: percentile(latencies, 99),
        plainP50Ms: percentile(plainLatencies, 50),
        plainP99Ms: percentile(plainLatencies, 99),
        postgresMs: percentile(postgresMs, 50),
        samples,
      };
      log(
        `  ${rows} rows moved in: p50 ${formatMs(point.p50Ms)}, p99 ${formatMs(point.p99Ms)}; ` +
          `plain shape, ${rows} rows inserted: p50 ${formatMs(point.plainP50Ms)}, p99 ${formatMs(point.plainP99Ms)}; ` +
          `the refresh's queries in Postgres alone ${formatMs(point.postgresMs)}`,
      );
      moves.push(point);
    }

    // The plain baseline of (b): single-row inserts.
    const plainLatencies: number[] = [];
    for (let i = 0; i < samples; i++) {
      const id = nextId++;
      plainLatencies.push(
        await plain.timeCommit(
          () => writer.query(`INSERT INTO ${POSTS} VALUES ($1, ${PLAIN_AUTHOR}, 'p')`, [id]),
          (seen) => seen.inserts >= 1,
        ),
      );
    }
    const burstStart = nextId;
    nextId += burst;
    const plainPerChangeMs =
      (await plain.timeCommit(
        async () => {
          for (let i = 0; i < burst; i++) {
            await writer.query(`INSERT INTO ${POSTS} VALUES ($1, ${PLAIN_AUTHOR}, 'p')`, [
              burstStart + i,
            ]);
          }
        },
        (seen) => seen.inserts >= burst,
      )) / burst;
    const plainResult = {
      p50Ms: percentile(plainLatencies, 50),
      p99Ms: percentile(plainLatencies, 99),
      perChangeMs: plainPerChangeMs,
    };
    log(
      `  plain shape, 1 row inserted: p50 ${formatMs(plainResult.p50Ms)}, p99 ${formatMs(plainResult.p99Ms)}; ` +
        `${formatMs(plainPerChangeMs)} per change over ${burst} commits`,
    );
    follower.close();
    plain.close();

    // (b) more shapes reading the same inner table; user 1 (one post) toggles.
    const points: SubqueryShapesPoint[] = [];
    let created = 1; // the shape of (a), $1 = 0
    for (const shapes of shapeCounts) {
      const started = performance.now();
      const params = Array.from({ length: shapes - created }, (_, i) => -(created + i));
      await forEachConcurrently(params, 4, async (param) => {
        const response = await httpRequest(`${subqueryUrl(baseUrl, param)}&offset=-1`);
        expectStatus(response, 200, `creating the subquery shape $1 = ${param}`);
      });
      created = Math.max(created, shapes);
      log(
        `${shapes} subquery shapes (${params.length} created in ${formatMs(performance.now() - started)})`,
      );
      // The last shape made is refreshed last: its follower sees the whole cost.
      const last = await Follower.open(subqueryUrl(baseUrl, -(shapes - 1)));
      try {
        let active = false;
        const toggle = () => {
          active = !active;
          return writer.query(`UPDATE ${USERS} SET active = $1 WHERE id = 1`, [active]);
        };
        const latencies: number[] = [];
        for (let i = 0; i < samples; i++) {
          const moving = !active ? 'in' : 'out';
          latencies.push(
            await last.timeCommit(toggle, (seen) =>
              moving === 'in' ? seen.moveIns >= 1 && seen.inserts >= 1 : seen.moveOuts >= 1,
            ),
          );
        }
        // Back-to-back commits, then a marker: an update of user 1's post, which the follower
        // gets once the writer has applied every toggle before it (user 1 ends active). A
        // refresh whose snapshot already sees later toggles spares them a refresh of their own,
        // so a burst costs less than its toggles one at a time.
        const toggles = (burst % 2 === 1) !== active ? burst : burst + 1;
        const perChangeMs =
          (await last.timeCommit(
            async () => {
              for (let i = 0; i < toggles; i++) await toggle();
              await writer.query(`UPDATE ${POSTS} SET title = $1 WHERE id = 1`, [`m${shapes}`]);
            },
            // An update or, when a refresh's snapshot already saw it, the row whole (an insert).
            (seen) => seen.titles.includes(`m${shapes}`),
          )) / toggles;
        await last.timeCommit(toggle, (seen) => seen.moveOuts >= 1); // inactive for what follows
        const point: SubqueryShapesPoint = {
          shapes,
          p50Ms: percentile(latencies, 50),
          p99Ms: percentile(latencies, 99),
          perChangeMs,
          samples,
        };
        log(
          `  ${shapes} shapes: one row moved, p50 ${formatMs(point.p50Ms)}, p99 ${formatMs(point.p99Ms)}; ` +
            `${formatMs(perChangeMs)} per inner change over ${burst} commits`,
        );
        points.push(point);
      } finally {
        last.close();
      }
    }
    return { moves, shapes: points, plain: plainResult, burst };
  } finally {
    await writer.end().catch(() => undefined);
    const storageDir = sluice?.storageDir;
    await sluice?.stop();
    if (storageDir) await removeStorage(storageDir);
    await db.drop();
  }
}

function subqueryUrl(baseUrl: string, param: number): string {
  return `${baseUrl}${PATHS.shape}?table=${POSTS}&where=${encodeURIComponent(WHERE)}&params%5B1%5D=${param}`;
}

function plainUrl(baseUrl: string): string {
  const where = encodeURIComponent('author = $1');
  return `${baseUrl}${PATHS.shape}?table=${POSTS}&where=${where}&params%5B1%5D=${PLAIN_AUTHOR}`;
}

/**
 * What a move-in of `user` makes the writer ask Postgres (shapes/subquery-refresh.ts): the
 * subquery's result, then the moved-in rows with the whole clause, in one REPEATABLE READ
 * transaction. Without the snapshot retries and the binding of `$1`.
 */
async function refreshQueries(client: pg.Client, user: number): Promise<number> {
  const started = performance.now();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await client.query({
      text: `SELECT id::text FROM ${USERS} WHERE active AND id >= 0 LIMIT 100001`,
      rowMode: 'array',
    });
    await client.query(
      `SELECT * FROM ${POSTS} WHERE (${WHERE.replace('$1', '0')}) AND (author IN (SELECT * FROM unnest(CAST($1 AS int4[]))))`,
      [[user]],
    );
  } finally {
    await client.query('COMMIT');
  }
  return performance.now() - started;
}

interface Seen {
  inserts: number;
  updates: number;
  deletes: number;
  moveIns: number;
  moveOuts: number;
  /** The `title` of every row inserted or updated. */
  titles: string[];
}

const nothingSeen = (): Seen => ({
  inserts: 0,
  updates: 0,
  deletes: 0,
  moveIns: 0,
  moveOuts: 0,
  titles: [],
});

/** One shape followed by live long-polls, as a client would: counts what arrives. */
class Follower {
  #offset: string;
  #poll: Promise<{ seen: Seen; receivedAt: number }> | undefined;

  private constructor(
    readonly url: string,
    readonly handle: string,
    offset: string,
  ) {
    this.#offset = offset;
  }

  /** Reads the shape up to date. */
  static async open(url: string): Promise<Follower> {
    let response = await httpRequest(`${url}&offset=-1`);
    for (;;) {
      expectStatus(response, 200, 'reading a shape');
      if (header(response, HEADERS.upToDate) !== undefined) break;
      response = await httpRequest(
        `${url}&handle=${header(response, HEADERS.handle)}&offset=${header(response, HEADERS.offset)}`,
      );
    }
    return new Follower(url, header(response, HEADERS.handle)!, header(response, HEADERS.offset)!);
  }

  /**
   * Parks a long-poll, runs `commit`, then reads on until `done` holds for what arrived since;
   * returns the time from the commit's start to the last response's last byte.
   */
  async timeCommit(commit: () => Promise<unknown>, done: (seen: Seen) => boolean): Promise<number> {
    const total = nothingSeen();
    this.#poll ??= this.#next();
    await sleep(20); // parked on the server
    const committedAt = performance.now();
    await commit();
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { seen, receivedAt } = await this.#poll;
      this.#poll = this.#next();
      total.inserts += seen.inserts;
      total.updates += seen.updates;
      total.deletes += seen.deletes;
      total.moveIns += seen.moveIns;
      total.moveOuts += seen.moveOuts;
      total.titles.push(...seen.titles);
      if (done(total)) return receivedAt - committedAt;
      if (Date.now() > deadline) throw new Error(`the follower saw only ${JSON.stringify(total)}`);
    }
  }

  async #next(): Promise<{ seen: Seen; receivedAt: number }> {
    const response = await httpRequest(
      `${this.url}&handle=${this.handle}&offset=${this.#offset}&live=true`,
    );
    expectStatus(response, 200, 'a live request');
    this.#offset = header(response, HEADERS.offset) ?? this.#offset;
    const seen = nothingSeen();
    for (const message of JSON.parse(response.body.toString()) as {
      value?: { title?: string };
      headers: { operation?: string; event?: string };
    }[]) {
      const { operation, event } = message.headers;
      if (message.value?.title !== undefined) seen.titles.push(message.value.title);
      if (operation === 'insert') seen.inserts++;
      else if (operation === 'update') seen.updates++;
      else if (operation === 'delete') seen.deletes++;
      else if (event === 'move-in') seen.moveIns++;
      else if (event === 'move-out') seen.moveOuts++;
    }
    return { seen, receivedAt: response.receivedAt };
  }

  /** Drops the parked long-poll (it ends with the server's long-poll timeout or its stop). */
  close(): void {
    this.#poll?.catch(() => undefined);
    this.#poll = undefined;
  }
}
