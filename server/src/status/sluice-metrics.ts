import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ServerState } from '@sluice/protocol';
import type { StatusMonitor } from './status-monitor.js';

const STATES: ServerState[] = ['starting', 'live', 'fallback', 'unavailable'];

/**
 * What `/metrics` exposes (Prometheus text, prom-client). One registry per app rather than
 * prom-client's global one, so several servers in one process (the tests) do not collide.
 */
export class SluiceMetrics {
  readonly registry = new Registry();
  readonly fallbackQueries: Counter;
  readonly fallbackCoalesced: Counter;
  readonly fallbackRejected: Counter;

  constructor(status: StatusMonitor) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'sluice_' });
    new Gauge({
      name: 'sluice_state',
      help: 'Server state: 1 for the current one of starting, live, fallback, unavailable',
      labelNames: ['state'],
      registers,
      collect() {
        const current = status.snapshot().state;
        for (const state of STATES) this.set({ state }, state === current ? 1 : 0);
      },
    });
    const transitions = new Counter({
      name: 'sluice_state_transitions_total',
      help: 'State changes, by previous and new state',
      labelNames: ['from', 'to'],
      registers,
    });
    status.onChange(({ from, to }) => transitions.inc({ from, to }));
    new Gauge({
      name: 'sluice_replication_lag_bytes',
      help: 'WAL written by Postgres that the slot has not confirmed (last probe)',
      registers,
      collect() {
        const lag = status.document().replication.lag_bytes;
        if (lag === null)
          this.reset(); // no slot, or not probed: no stale figure
        else this.set(lag);
      },
    });
    new Gauge({
      name: 'sluice_slot_retained_wal_bytes',
      help: 'WAL Postgres keeps for the slot (last probe)',
      registers,
      collect() {
        const retained = status.document().replication.retained_wal_bytes;
        if (retained === null) this.reset();
        else this.set(retained);
      },
    });
    this.fallbackQueries = new Counter({
      name: 'sluice_fallback_queries_total',
      help: 'Shape queries run against Postgres in fallback mode',
      registers,
    });
    this.fallbackCoalesced = new Counter({
      name: 'sluice_fallback_queries_coalesced_total',
      help: 'Fallback requests answered by a query already running or just run',
      registers,
    });
    this.fallbackRejected = new Counter({
      name: 'sluice_fallback_rejected_total',
      help: 'Fallback requests refused with 503 because too many queries were running',
      registers,
    });
  }
}
