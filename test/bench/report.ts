import type { ChangesResult } from './changes-bench.js';
import type { IdleShapesResult } from './idle-shapes-bench.js';
import type { IdleResult } from './idle-bench.js';
import type { LatencyResult } from './latency-bench.js';
import type { RoutingResult } from './routing-bench.js';
import type { ScaleoutResult } from './scaleout-bench.js';
import type { SnapshotResult } from './snapshot-bench.js';
import type { StartupResult } from './startup-bench.js';
import type { SubqueryBenchResult } from './subquery-bench.js';
import {
  formatMs,
  formatRate,
  formatRatio,
  type BenchConfig,
  type MachineInfo,
} from './bench-support.js';

export interface BenchResults {
  snapshot: SnapshotResult | undefined;
  changes: ChangesResult | undefined;
  /** Measure 2 again with the shape logs in Redis (issue 17), next to the disk's figures. */
  changesRedis: ChangesResult | undefined;
  latency: LatencyResult[] | undefined;
  routing: RoutingResult | undefined;
  startup: StartupResult | undefined;
  shapes: IdleShapesResult | undefined;
  idle: IdleResult | undefined;
  /** Measure 8 (issue 17): fan-out with the clients split across 1, 2 and 3 servers. */
  scaleout: ScaleoutResult[] | undefined;
  /** Measure 9: a change in a subquery's inner table. */
  subquery?: SubqueryBenchResult | undefined;
}

interface Row {
  measure: string;
  sluice: string;
  baseline: string;
  ratio: string;
  target: string;
  verdict: string;
}

const HEADINGS: Row = {
  measure: 'measure',
  sluice: 'Sluice (median)',
  baseline: 'baseline, same run (median)',
  ratio: 'ratio',
  target: 'target (docs/performance.md)',
  verdict: 'verdict',
};

function rows(results: BenchResults): { rows: Row[]; notes: string[] } {
  const out: Row[] = [];
  const notes: string[] = [];
  const { snapshot, changes, changesRedis, latency, routing, startup, shapes, idle, scaleout } =
    results;
  if (snapshot) {
    out.push({
      measure: `initial sync, ${snapshot.rows.toLocaleString('en')} rows`,
      sluice: `${formatRate(snapshot.sluiceRowsPerS)} rows/s`,
      baseline: `COPY … TO STDOUT ${formatRate(snapshot.copyRowsPerS)} rows/s`,
      ratio: formatRatio(snapshot.ratio),
      target: '≥ 0.25×',
      verdict: snapshot.ratio >= 0.25 ? 'meets' : 'below',
    });
    out.push({
      measure: 'initial sync, first response received whole',
      sluice: formatMs(snapshot.firstChunkMs),
      baseline: '—',
      ratio: '—',
      target: '≤ 200 ms',
      verdict: snapshot.firstChunkMs <= 200 ? 'meets' : 'below',
    });
    notes.push(
      `initial sync: ${formatMs(snapshot.sluiceMs)} in all, of which ${formatMs(snapshot.firstChunkMs)} before the first chunk ` +
        `(the first snapshot chunk built and synced; later chunks are served as they are sealed); ` +
        `${snapshot.chunks} chunks, ${snapshot.sluiceMb.toFixed(0)} MB of JSON vs ${snapshot.copyMb.toFixed(0)} MB of COPY text; ` +
        `server CPU ${formatMs(snapshot.serverCpuMs ?? NaN)} per sync; ` +
        `COPY ${formatMs(snapshot.copyMs)}; table ${snapshot.tableMb.toFixed(0)} MB; server RSS after ${snapshot.serverRssMb ?? '?'} MB`,
    );
  }
  for (const result of [changes, changesRedis]) {
    if (!result) continue;
    for (const [index, phase] of result.phases.entries()) {
      const baselineName =
        phase.recvPerS !== undefined ? 'pg_recvlogical' : 'pg-logical-replication';
      const target = phase.shapes > 1 ? 0.75 : 0.25;
      // The targets are the disk's; Redis is reported next to it (ratio to the disk's rate).
      const disk = result.storage === 'redis' ? changes?.phases[index] : undefined;
      out.push({
        measure: `changes/s into shape logs, ${phase.label}`,
        sluice: `${formatRate(phase.sluicePerS)}/s`,
        baseline: `${baselineName} ${formatRate(phase.recvPerS ?? phase.libraryPerS)}/s`,
        ratio: formatRatio(phase.ratio),
        target: result.storage === 'redis' ? '(figure)' : `≥ ${target}×`,
        verdict:
          result.storage === 'redis'
            ? disk
              ? `${formatRatio(phase.sluicePerS / disk.sluicePerS)} the disk's`
              : '-'
            : phase.ratio >= target
              ? 'meets'
              : 'below',
      });
      notes.push(
        `changes ${phase.label}: ${phase.changes.toLocaleString('en')} inserts; Sluice caught up in ${formatMs(phase.sluiceMs)} ` +
          `(server CPU ${formatMs(phase.serverCpuMs ?? NaN)}); ` +
          `in-process pg-logical-replication consumer ${formatRate(phase.libraryPerS)}/s (Sluice ÷ it ${formatRatio(phase.ratioLibrary)}); ` +
          `Postgres committed the workload at ${formatRate(phase.writePerS)}/s`,
      );
    }
    notes.push(
      `changes (${result.storage}): baseline ${result.baselineName}; ${result.shapesCreated} shapes created in ${formatMs(result.shapeSetupMs)}, ` +
        `server RSS then ${result.serverRssMb ?? '?'} MB; ${result.verified}`,
    );
  }
  for (const result of latency ?? []) {
    const many = result.clients > 1;
    const websocket = result.transport === 'websocket';
    const who = websocket ? 'WebSocket subscriber' : 'long-poll client';
    const floor = result.floor;
    // The targets (docs/performance.md) are stated for 1,000 and 10,000 clients.
    const limitMs = websocket
      ? { 1_000: 20, 10_000: 100 }[result.clients]
      : { 1_000: 25, 10_000: 150 }[result.clients];
    out.push({
      measure: `commit → client, ${result.clients.toLocaleString('en')} ${who}${many ? 's' : ''}`,
      sluice: `p50 ${formatMs(result.p50Ms)}, p99 ${formatMs(result.p99Ms)}`,
      baseline: floor
        ? `bare node:http${websocket ? ' + ws' : ''} fan-out p50 ${formatMs(floor.p50Ms)}, p99 ${formatMs(floor.p99Ms)}`
        : '—',
      ratio: floor ? `p99 ${formatRatio(result.p99Ms / floor.p99Ms)}` : '—',
      target:
        limitMs === undefined
          ? '—'
          : `p99 ≤ ${limitMs} ms (${result.clients.toLocaleString('en')} clients)`,
      // A scaled-down run does not test the target.
      verdict:
        limitMs === undefined ? (many ? 'n/a' : '—') : result.p99Ms <= limitMs ? 'meets' : 'below',
    });
    if (websocket && many && result.idleKbPerClient !== undefined) {
      out.push({
        measure: `memory per idle WebSocket (one subscription), ${result.clients.toLocaleString('en')} sockets`,
        sluice: `${result.idleKbPerClient.toFixed(1)} kB RSS`,
        baseline: '—',
        ratio: '—',
        target: '≤ 10 kB per socket',
        // The target is stated at 10,000 sockets.
        verdict: result.clients < 10_000 ? 'n/a' : result.idleKbPerClient <= 10 ? 'meets' : 'below',
      });
    }
    const idle =
      result.idleKbPerClient === undefined
        ? ''
        : `; server RSS with them idle: ${result.idleKbPerClient.toFixed(1)} kB more per ${who}`;
    notes.push(
      `latency, ${result.clients} ${who}(s): ${result.eventsPerRun} commits per run, ${result.samplesPerRun} samples per run, ` +
        `median of per-run max ${formatMs(result.maxMs)}; CPU per commit: server ${formatMs(result.serverCpuPerEventMs ?? NaN)}, ` +
        `clients (${websocket ? 'raw WebSocket' : result.client}) ${formatMs(result.clientCpuPerEventMs)}; INSERT round trip (included) ${formatMs(result.insertRoundTripMs)}; ` +
        `server RSS while holding them ${result.serverRssMb ?? '?'} MB${idle}` +
        (floor
          ? `; floor (fan-out-floor-server.ts): median of per-run max ${formatMs(floor.maxMs)}, server CPU per event ${formatMs(floor.serverCpuPerEventMs ?? NaN)}, clients ${formatMs(floor.clientCpuPerEventMs)}, POST round trip (included) ${formatMs(floor.insertRoundTripMs)}`
          : ''),
    );
  }
  if (routing) {
    const first = routing.points[0]!;
    for (const point of routing.points) {
      out.push({
        measure: `changes/s, ${point.shapes.toLocaleString('en')} equality-filtered shapes on one table`,
        sluice: `${formatRate(point.sluicePerS)}/s; live p50 ${formatMs(point.latencyP50Ms)}, p99 ${formatMs(point.latencyP99Ms)}`,
        baseline: `pg-logical-replication ${formatRate(point.libraryPerS)}/s; ${first.shapes} shapes ${formatRate(first.sluicePerS)}/s`,
        ratio: `${formatRatio(point.ratio)}; vs ${first.shapes} shapes ${formatRatio(point.sluicePerS / first.sluicePerS)}`,
        target: 'flat from 10 to 10,000',
        verdict:
          point === first ? '—' : point.sluicePerS / first.sluicePerS >= 0.8 ? 'flat' : 'not flat',
      });
      notes.push(
        `routing, ${point.shapes} shapes: ${point.changes.toLocaleString('en')} inserts per run for 10 of them; ` +
          `server CPU per change ${((point.cpuPerChangeMs ?? NaN) * 1000).toFixed(1)} µs (restart to caught up); ` +
          `live latency over ${point.latencySamples} single-row commits`,
      );
    }
  }
  if (startup) {
    const meets = startup.listeningMs <= 1_000 && startup.servedMs <= 10_000;
    out.push({
      measure: `start-up with ${startup.shapes.toLocaleString('en')} stored shapes`,
      sluice: `listening ${formatMs(startup.listeningMs)}, every shape served ${formatMs(startup.servedMs)}`,
      baseline: `no stored shape: listening ${formatMs(startup.emptyListeningMs)}`,
      ratio: formatRatio(startup.listeningMs / startup.emptyListeningMs),
      target: 'listening ≤ 1 s, every shape served ≤ 10 s (10,000 shapes)',
      // The target is stated for 10,000 shapes; a scaled-down run does not test it.
      verdict: startup.shapes >= 10_000 ? (meets ? 'meets' : 'below') : 'n/a',
    });
    notes.push(
      `start-up: times from the process's spawn of the compiled build (Node's own start included) to /v1/health answering, ` +
        `and to a stored shape answering 200 under its handle (lookups wait for every stored shape, ` +
        `so that is when all are served; ${startup.sampled} others checked after)`,
    );
  }
  if (shapes) {
    const perShape = shapes.kbPerShape;
    out.push({
      measure: `memory per idle shape, ${shapes.shapes.toLocaleString('en')} shapes`,
      sluice: `${perShape?.toFixed(2) ?? '?'} kB RSS each`,
      baseline: `server RSS before ${((shapes.rssBeforeKb ?? NaN) / 1024).toFixed(0)} MB`,
      ratio: '—',
      target: '≤ 5 kB per shape',
      verdict: perShape === undefined ? 'n/a' : perShape <= 5 ? 'meets' : 'below',
    });
    notes.push(
      `idle shapes: \`where=owner = $1\` shapes of one row each, created in ${formatMs(shapes.createMs)} ` +
        `(16 requests in flight) and never read since; RSS after a full garbage collection`,
    );
  }
  if (idle) {
    const meets = idle.rssHeldMb !== undefined && idle.rssHeldMb <= 300;
    out.push({
      measure: `${idle.held.toLocaleString('en')} idle long-polls held by one server`,
      sluice: `RSS ${idle.rssHeldMb ?? '?'} MB (${idle.kbPerHeld?.toFixed(1) ?? '?'} kB each)`,
      baseline: `none held: RSS ${idle.rssBeforeMb ?? '?'} MB`,
      ratio: '—',
      target: '≥ 20,000 at ≤ 300 MB RSS',
      // The target is stated for 20,000: fewer (scaled down, or capped by the descriptor limit)
      // can only show that it is missed.
      verdict: !meets ? 'below' : idle.held >= 20_000 ? 'meets' : 'n/a',
    });
    notes.push(
      `idle long-polls: ${idle.held} held (${idle.wanted} asked for), one keep-alive connection each; ` +
        `RSS is an upper bound (garbage not yet collected counts)`,
    );
  }
  scaleoutRows(scaleout ?? [], out, notes);
  if (results.subquery) subqueryRows(results.subquery, out, notes);
  return { rows: out, notes };
}

/** Measure 8: each instance count against one instance with the same clients, in the same run. */
function scaleoutRows(results: readonly ScaleoutResult[], out: Row[], notes: string[]): void {
  for (const result of results) {
    const who = result.transport === 'websocket' ? 'WebSocket subscribers' : 'long-poll clients';
    const one = results.find(
      (other) => other.transport === result.transport && other.instances === 1,
    );
    out.push({
      measure:
        result.instances === 1
          ? `commit → client, ${result.clients} ${who} on 1 instance (Redis storage)`
          : `commit → client, ${result.clients} ${who} split across ${result.instances} instances`,
      sluice: `p50 ${formatMs(result.p50Ms)}, p99 ${formatMs(result.p99Ms)}`,
      baseline: one ? `1 instance: p50 ${formatMs(one.p50Ms)}, p99 ${formatMs(one.p99Ms)}` : '—',
      ratio:
        one && one !== result
          ? `p99 ${formatRatio(result.p99Ms / one.p99Ms)}, p50 ${formatRatio(result.p50Ms / one.p50Ms)}`
          : '—',
      target: '(figure)',
      verdict: '—',
    });
    notes.push(
      `fan-out, ${result.clients} ${who}, ${result.instances} instance(s): ${result.eventsPerRun} commits per run at ` +
        `${result.commitsPerS}/s, ${result.samplesPerRun} samples per run, median of per-run max ${formatMs(result.maxMs)}; ` +
        `server CPU per commit, all instances ${formatMs(result.serverCpuPerEventMs ?? NaN)} ` +
        `(writer ${formatMs(result.writerCpuPerEventMs ?? NaN)}); INSERT round trip (included) ${formatMs(result.insertRoundTripMs)}`,
    );
  }
}

/**
 * Measure 9: a move's latency against a plain shape getting as many rows, and the time per inner
 * change against the number of subquery shapes, against a plain shape's changes (same run).
 */
function subqueryRows(result: SubqueryBenchResult, out: Row[], notes: string[]): void {
  for (const point of result.moves) {
    const rows = `${point.rows.toLocaleString('en')} ${point.rows === 1 ? 'row' : 'rows'}`;
    out.push({
      measure: `subquery shape, 1 inner row change moves ${rows} in`,
      sluice: `p50 ${formatMs(point.p50Ms)}, p99 ${formatMs(point.p99Ms)}`,
      baseline: `plain shape, ${rows} inserted: p50 ${formatMs(point.plainP50Ms)}, p99 ${formatMs(point.plainP99Ms)}`,
      ratio: `p50 ${formatRatio(point.p50Ms / point.plainP50Ms)}`,
      target: '(figure)',
      verdict: '—',
    });
  }
  const { plain } = result;
  for (const point of result.shapes) {
    out.push({
      measure: `subquery shapes reading one inner table: ${point.shapes}, one row moved`,
      sluice: `p50 ${formatMs(point.p50Ms)}, p99 ${formatMs(point.p99Ms)}; ${formatMs(point.perChangeMs)} per change`,
      baseline: `plain shape: p50 ${formatMs(plain.p50Ms)}, p99 ${formatMs(plain.p99Ms)}; ${formatMs(plain.perChangeMs)} per change`,
      ratio: `per change ${formatRatio(point.perChangeMs / plain.perChangeMs)}`,
      target: '(figure)',
      verdict: '—',
    });
  }
  notes.push(
    `subquery: ${result.moves[0]?.samples ?? 0} samples per point; the refresh's two queries run directly in Postgres took ` +
      result.moves
        .map(
          (point) =>
            `${formatMs(point.postgresMs)} (${point.rows} ${point.rows === 1 ? 'row' : 'rows'})`,
        )
        .join(', ') +
      `; time per change over bursts of ${result.burst} single-row commits; latencies at the follower of the last shape made`,
  );
}

/** A fixed-width table for the terminal. */
export function renderTable(results: BenchResults): string {
  const { rows: body, notes } = rows(results);
  const all = [HEADINGS, ...body];
  const keys = Object.keys(HEADINGS) as (keyof Row)[];
  const widths = keys.map((key) => Math.max(...all.map((row) => row[key].length)));
  const line = (row: Row) => keys.map((key, i) => row[key].padEnd(widths[i]!)).join('  ');
  const rule = widths.map((width) => '-'.repeat(width)).join('  ');
  return [line(HEADINGS), rule, ...body.map(line), '', ...notes.map((note) => `- ${note}`)].join(
    '\n',
  );
}

export function describeMachine(machine: MachineInfo): string {
  return (
    `${machine.cpu}, ${machine.cores} cores, ${machine.memoryGb} GB RAM, ${machine.platform}, ` +
    `Node ${machine.node}, PostgreSQL ${machine.postgres}`
  );
}

/** The block to paste into docs/performance.md. */
export function renderMarkdown(
  results: BenchResults,
  machine: MachineInfo,
  config: BenchConfig,
  date: Date,
  revision: string,
): string {
  const { rows: body, notes } = rows(results);
  const keys = Object.keys(HEADINGS) as (keyof Row)[];
  const line = (row: Row) => `| ${keys.map((key) => row[key]).join(' | ')} |`;
  return [
    `Measured ${date.toISOString().slice(0, 10)} on ${describeMachine(machine)}; code ${revision}.`,
    `Medians of ${config.runs} runs (BENCH_RUNS=${config.runs}, BENCH_SCALE=${config.scale}).`,
    '',
    line(HEADINGS),
    `|${keys.map(() => '---').join('|')}|`,
    ...body.map(line),
    '',
    ...notes.map((note) => `- ${note}`),
  ].join('\n');
}
