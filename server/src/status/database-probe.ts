import pg from 'pg';
import { describeProblem } from '../pg/describe-problem.js';
import type { StatusMonitor } from './status-monitor.js';

export interface DatabaseProbeOptions {
  connectionString: string;
  slotName: string;
  status: StatusMonitor;
  /** Between probes while live, and while not (faster, to notice recovery and outages). */
  liveIntervalMs: number;
  degradedIntervalMs: number;
  /** Connect and query timeout of one probe. */
  timeoutMs: number;
  log: { warn(object: object, message: string): void };
}

interface ProbeRow {
  lag: string | null;
  retained: string | null;
}

/**
 * Asks the primary, on a timer, whether it answers and how far behind the slot is, and tells the
 * status monitor. Its own one-connection pool, so a pool busy with snapshots never delays the
 * answer, and timeouts, so a black-holed database reads as down instead of hanging the probe.
 */
export class DatabaseProbe {
  readonly #options: DatabaseProbeOptions;
  readonly #pool: pg.Pool;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(options: DatabaseProbeOptions) {
    this.#options = options;
    this.#pool = new pg.Pool({
      connectionString: options.connectionString,
      max: 1,
      connectionTimeoutMillis: options.timeoutMs,
      query_timeout: options.timeoutMs,
      keepAlive: true,
    });
    this.#pool.on('error', () => undefined); // an idle connection dying is the next probe's news
  }

  start(): void {
    this.probeNow();
  }

  /** Probes at once (a failure elsewhere suggests the database may be gone). */
  probeNow(): void {
    if (this.#closed || this.#running) return;
    clearTimeout(this.#timer);
    this.#running = this.#probe().finally(() => {
      this.#running = undefined;
      if (this.#closed) return;
      const live = this.#options.status.current().state === 'live';
      const delay = live ? this.#options.liveIntervalMs : this.#options.degradedIntervalMs;
      this.#timer = setTimeout(() => this.probeNow(), delay);
      this.#timer.unref();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
    await this.#pool.end().catch(() => undefined);
  }

  async #probe(): Promise<void> {
    const { status } = this.#options;
    try {
      // On a standby pg_current_wal_lsn() fails; the CASE keeps it from being called there.
      const { rows } = await this.#pool.query<ProbeRow>(
        `SELECT CASE WHEN pg_is_in_recovery() THEN NULL
                     ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::text END AS lag,
                CASE WHEN pg_is_in_recovery() THEN NULL
                     ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::text END AS retained
           FROM (SELECT 1) AS one
           LEFT JOIN pg_replication_slots s ON s.slot_name = $1`,
        [this.#options.slotName],
      );
      const row = rows[0];
      status.databaseReachable();
      status.reportSlotPositions(toBytes(row?.lag), toBytes(row?.retained));
    } catch (error) {
      const problem = describeProblem(error);
      if (status.inputs.database !== 'down')
        this.#options.log.warn({ code: problem.code }, `database probe failed: ${problem.message}`);
      status.databaseUnreachable(problem);
    }
  }
}

function toBytes(value: string | null | undefined): number | null {
  return value === null || value === undefined ? null : Math.max(0, Number(value));
}
