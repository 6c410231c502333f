/**
 * The bench's chart (docs/performance.svg), as hand-written SVG text: (a) commit → client latency
 * (p50 and p99) against the number of clients, one line per live transport, log-scale on both
 * axes, with the p99 of the bare fan-out (the floor, measured with the same clients) dotted and
 * the targets of docs/performance.md as marks; (b) the throughput ratios against their
 * baselines (snapshot ÷ COPY, changes ÷ pg_recvlogical) as bars, each with its target line.
 * A panel whose measures are absent from the results is left out; with neither, there is no chart.
 */

/** What the chart reads of the results (`BenchResults`, test/bench/report.ts), and no more. */
export interface ChartInput {
  latency?:
    | readonly {
        transport: 'long-poll' | 'websocket';
        clients: number;
        p50Ms: number;
        p99Ms: number;
        /** The same clients against the bare fan-out (fan-out-floor-server.ts). */
        floor?: { p99Ms: number } | undefined;
      }[]
    | undefined;
  snapshot?: { ratio: number } | undefined;
  changes?:
    | { phases: readonly { label: string; shapes: number; ratio: number; recvPerS?: number }[] }
    | undefined;
}

/** docs/performance.md's latency targets: p99 at these client counts, in ms. */
const LATENCY_TARGETS_MS = {
  'long-poll': { 1_000: 25, 10_000: 150 },
  websocket: { 1_000: 20, 10_000: 100 },
} as const;
const SNAPSHOT_TARGET = 0.25;
/** Changes into one shape ≥ 0.25× the WAL baseline; into many, ≥ 0.75×. */
const changesTarget = (shapes: number) => (shapes > 1 ? 0.75 : 0.25);

const COLORS = { 'long-poll': '#1f77b4', websocket: '#d62728' } as const;
const LABELS = { 'long-poll': 'long-poll', websocket: 'WebSocket' } as const;

const PANEL = { width: 480, height: 360, left: 64, right: 24, top: 40, bottom: 56 };
/** A caption character's width at 11 px, generously: lines are broken to fit the chart. */
const CAPTION_CHAR_PX = 6.5;

/** The SVG document, or undefined when the results hold nothing the chart shows. */
export function renderChart(results: ChartInput, caption: string): string | undefined {
  const panels: string[] = [];
  if (results.latency && results.latency.length > 0) panels.push(latencyPanel(results.latency));
  const bars = ratioBars(results);
  if (bars.length > 0) panels.push(ratioPanel(bars));
  if (panels.length === 0) return undefined;
  const width = PANEL.width * panels.length;
  const captionLines = wrap(caption, Math.floor(width / CAPTION_CHAR_PX));
  const height = PANEL.height + 14 + captionLines.length * 14;
  const placed = panels.map(
    (panel, i) => `<g transform="translate(${PANEL.width * i},0)">${panel}</g>`,
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...placed,
    ...captionLines.map((line, i) =>
      text(8, PANEL.height + 14 + i * 14, line, { size: 11, fill: '#555' }),
    ),
    '</svg>',
    '',
  ].join('\n');
}

type LatencyPoint = NonNullable<ChartInput['latency']>[number];

function latencyPanel(latency: readonly LatencyPoint[]): string {
  const { width, height, left, right, top, bottom } = PANEL;
  const clients = latency.map((point) => point.clients);
  const values = latency.flatMap((point) => [
    point.p50Ms,
    point.p99Ms,
    ...(point.floor ? [point.floor.p99Ms] : []),
  ]);
  const targets = Object.values(LATENCY_TARGETS_MS).flatMap((byClients) =>
    Object.values(byClients),
  );
  const x = logScale(Math.min(1, ...clients), Math.max(10_000, ...clients), left, width - right);
  const y = logScale(Math.min(1, ...values), Math.max(...targets, ...values), height - bottom, top);
  const out = [
    text(width / 2, 20, '(a) commit → client latency, one shape', { anchor: 'middle', size: 14 }),
    ...logAxis(x, 'x', height - bottom, 'clients (log scale)'),
    ...logAxis(y, 'y', left, 'ms (log scale)'),
  ];
  for (const transport of ['long-poll', 'websocket'] as const) {
    const color = COLORS[transport];
    for (const [clientsAt, limit] of Object.entries(LATENCY_TARGETS_MS[transport])) {
      // A target: a short bar at its client count, in the transport's colour.
      const cx = x(Number(clientsAt));
      const cy = y(limit);
      out.push(
        `<line class="target" x1="${f(cx - 10)}" y1="${f(cy)}" x2="${f(cx + 10)}" y2="${f(cy)}" stroke="${color}" stroke-width="3" opacity="0.5"/>`,
      );
    }
    const points = latency
      .filter((point) => point.transport === transport)
      .sort((a, b) => a.clients - b.clients);
    if (points.length === 0) continue;
    // The floor's p99: what a bare server needs on this machine for the same clients.
    const floor = points.flatMap(({ clients, floor }) =>
      floor ? [{ cx: x(clients), cy: y(floor.p99Ms), clients, ms: floor.p99Ms }] : [],
    );
    if (floor.length > 0) {
      out.push(
        `<polyline class="floor ${transport}" fill="none" stroke="${color}" stroke-width="1.5" stroke-dasharray="1 3" opacity="0.7" points="${floor.map(({ cx, cy }) => `${f(cx)},${f(cy)}`).join(' ')}"/>`,
      );
      for (const { cx, cy, clients, ms } of floor) {
        out.push(
          `<circle class="point floor ${transport}" cx="${f(cx)}" cy="${f(cy)}" r="2.5" fill="white" stroke="${color}"><title>${escape(`bare ${LABELS[transport]} fan-out, ${clients} clients: p99 ${ms.toFixed(1)} ms`)}</title></circle>`,
        );
      }
    }
    for (const percentile of ['p99', 'p50'] as const) {
      const at = points.map((point) => ({
        cx: x(point.clients),
        cy: y(point[`${percentile}Ms`]),
        point,
      }));
      const dash = percentile === 'p50' ? ' stroke-dasharray="5 4"' : '';
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${at.map(({ cx, cy }) => `${f(cx)},${f(cy)}`).join(' ')}"/>`,
      );
      for (const { cx, cy, point } of at) {
        const ms = point[`${percentile}Ms`];
        out.push(
          `<circle class="point ${percentile} ${transport}" cx="${f(cx)}" cy="${f(cy)}" r="3.5" fill="${color}"><title>${escape(`${LABELS[transport]}, ${point.clients} clients: ${percentile} ${ms.toFixed(1)} ms`)}</title></circle>`,
        );
      }
    }
  }
  out.push(
    ...legend(left + 8, top + 4, [
      ...(['long-poll', 'websocket'] as const).map((transport) => ({
        color: COLORS[transport],
        label: `${LABELS[transport]} p99 (solid), p50 (dashed)`,
      })),
      { color: '#888', label: 'bare fan-out p99 (dotted), target p99 (bars)' },
    ]),
  );
  return out.join('\n');
}

interface Bar {
  label: string;
  ratio: number;
  target: number;
}

function ratioBars(results: ChartInput): Bar[] {
  const bars: Bar[] = [];
  if (results.snapshot) {
    bars.push({ label: 'snapshot ÷ COPY', ratio: results.snapshot.ratio, target: SNAPSHOT_TARGET });
  }
  for (const phase of results.changes?.phases ?? []) {
    const baseline = phase.recvPerS === undefined ? 'library' : 'pg_recvlogical';
    bars.push({
      label: `${phase.shapes.toLocaleString('en')} shape${phase.shapes === 1 ? '' : 's'} ÷ ${baseline}`,
      ratio: phase.ratio,
      target: changesTarget(phase.shapes),
    });
  }
  return bars;
}

function ratioPanel(bars: Bar[]): string {
  const { width, height, left, right, top, bottom } = PANEL;
  const highest = Math.max(1, ...bars.flatMap((bar) => [bar.ratio, bar.target])) * 1.1;
  const y = (value: number) => height - bottom - (value / highest) * (height - bottom - top);
  const slot = (width - left - right) / bars.length;
  const out = [
    text(width / 2, 20, '(b) throughput ÷ baseline (same run)', { anchor: 'middle', size: 14 }),
    `<line x1="${left}" y1="${height - bottom}" x2="${width - right}" y2="${height - bottom}" stroke="#333"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${height - bottom}" stroke="#333"/>`,
  ];
  for (let tick = 0; tick <= highest; tick += highest > 3 ? 1 : 0.25) {
    out.push(
      `<line x1="${left - 4}" y1="${f(y(tick))}" x2="${width - right}" y2="${f(y(tick))}" stroke="#eee"/>`,
      text(left - 8, y(tick) + 4, `${tick.toFixed(2)}×`, { anchor: 'end' }),
    );
  }
  bars.forEach((bar, i) => {
    const x0 = left + slot * i + slot * 0.2;
    const barWidth = slot * 0.6;
    const color = bar.ratio >= bar.target ? '#2ca02c' : '#ff7f0e';
    out.push(
      `<rect class="bar" x="${f(x0)}" y="${f(y(bar.ratio))}" width="${f(barWidth)}" height="${f(y(0) - y(bar.ratio))}" fill="${color}"><title>${escape(`${bar.label}: ${bar.ratio.toFixed(2)}× (target ≥ ${bar.target}×)`)}</title></rect>`,
      `<line class="target" x1="${f(x0 - 6)}" y1="${f(y(bar.target))}" x2="${f(x0 + barWidth + 6)}" y2="${f(y(bar.target))}" stroke="#333" stroke-width="2" stroke-dasharray="6 3"/>`,
      text(x0 + barWidth / 2, y(bar.ratio) - 6, `${bar.ratio.toFixed(2)}×`, { anchor: 'middle' }),
      // Two lines (what ÷ which baseline): long labels of neighbouring bars would overlap.
      ...bar.label.split(' ÷ ').map((line, row) =>
        text(x0 + barWidth / 2, height - bottom + 18 + row * 14, row === 0 ? line : `÷ ${line}`, {
          anchor: 'middle',
          size: 11,
        }),
      ),
    );
  });
  out.push(
    ...legend(left + 8, top + 4, [
      { color: '#2ca02c', label: 'meets its target' },
      { color: '#ff7f0e', label: 'below its target' },
      { color: '#333', label: 'target (dashed)' },
    ]),
  );
  return out.join('\n');
}

/** A log-scale mapping from [lowest, highest] to [from, to] (pixels). */
function logScale(lowest: number, highest: number, from: number, to: number) {
  const low = Math.log10(Math.max(lowest, 1e-3));
  const high = Math.max(Math.log10(highest), low + 1);
  const scale = (value: number) =>
    from + ((Math.log10(Math.max(value, 1e-3)) - low) / (high - low)) * (to - from);
  return Object.assign(scale, { low, high });
}

/** The axis of `scale` with a tick at every power of ten. */
function logAxis(
  scale: ReturnType<typeof logScale>,
  axis: 'x' | 'y',
  at: number,
  label: string,
): string[] {
  const { width, height, left, right, top, bottom } = PANEL;
  const out =
    axis === 'x'
      ? [
          `<line x1="${left}" y1="${at}" x2="${width - right}" y2="${at}" stroke="#333"/>`,
          text((left + width - right) / 2, height - 16, label, { anchor: 'middle' }),
        ]
      : [
          `<line x1="${at}" y1="${top}" x2="${at}" y2="${height - bottom}" stroke="#333"/>`,
          `<text x="16" y="${(top + height - bottom) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(top + height - bottom) / 2})">${escape(label)}</text>`,
        ];
  for (let power = Math.ceil(scale.low); power <= Math.floor(scale.high); power++) {
    const value = 10 ** power;
    const p = scale(value);
    const name = value >= 1 ? value.toLocaleString('en') : String(value);
    out.push(
      axis === 'x'
        ? `<line x1="${f(p)}" y1="${top}" x2="${f(p)}" y2="${at + 4}" stroke="#eee"/>` +
            text(p, at + 18, name, { anchor: 'middle' })
        : `<line x1="${at - 4}" y1="${f(p)}" x2="${width - right}" y2="${f(p)}" stroke="#eee"/>` +
            text(at - 8, p + 4, name, { anchor: 'end' }),
    );
  }
  return out;
}

/** `value` in lines of at most `columns` characters, broken after "; " or ", " where possible. */
function wrap(value: string, columns: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const part of value.split(/(?<=[;,] )/)) {
    if (line !== '' && line.length + part.length > columns) {
      lines.push(line.trimEnd());
      line = '';
    }
    line += part;
  }
  if (line !== '') lines.push(line.trimEnd());
  return lines;
}

function legend(x: number, y: number, entries: { color: string; label: string }[]): string[] {
  return entries.map(
    ({ color, label }, i) =>
      `<rect x="${x}" y="${y + i * 16}" width="12" height="10" fill="${color}"/>` +
      text(x + 18, y + i * 16 + 9, label, { size: 11 }),
  );
}

function text(
  x: number,
  y: number,
  content: string,
  { anchor = 'start', size, fill }: { anchor?: string; size?: number; fill?: string } = {},
): string {
  const extra = `${size === undefined ? '' : ` font-size="${size}"`}${fill === undefined ? '' : ` fill="${fill}"`}`;
  return `<text x="${f(x)}" y="${f(y)}" text-anchor="${anchor}"${extra}>${escape(content)}</text>`;
}

/** Coordinates with one decimal: smaller files, no visible difference. */
const f = (value: number) => (Math.round(value * 10) / 10).toString();

function escape(value: string): string {
  return value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}
