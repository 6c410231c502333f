import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderChart, type ChartInput } from './chart.js';

/**
 * Well-formed XML, checked by hand (no XML parser among the dependencies): every tag closed in
 * order, attributes quoted, no stray `<` or `&` in text; the root is one <svg> in SVG's namespace.
 */
function assertWellFormedSvg(svg: string): void {
  const stack: string[] = [];
  let roots = 0;
  const tag = /<(\/?)([a-zA-Z][\w-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  let at = 0;
  while (at < svg.length) {
    const next = svg.indexOf('<', at);
    const textPart = svg.slice(at, next === -1 ? svg.length : next);
    assert.doesNotMatch(textPart, /&(?!(amp|lt|gt|quot);)/, `a bare & in ${textPart}`);
    assert.ok(!textPart.includes('>'), `a stray > in ${textPart}`);
    if (next === -1) break;
    tag.lastIndex = next;
    const match = tag.exec(svg);
    assert.ok(match, `a malformed tag at ${svg.slice(next, next + 80)}`);
    const [whole, closing, name, , selfClosing] = match;
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes what it did not open`);
    else if (!selfClosing) {
      if (stack.length === 0) roots++;
      stack.push(name!);
    } else if (stack.length === 0) roots++;
    at = next + whole.length;
  }
  assert.deepEqual(stack, [], 'every element closed');
  assert.equal(roots, 1, 'one root element');
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /);
}

const count = (svg: string, pattern: RegExp) => svg.match(pattern)?.length ?? 0;

const full: ChartInput = {
  latency: [
    { transport: 'long-poll', clients: 1_000, p50Ms: 12, p99Ms: 40, floor: { p99Ms: 30 } },
    { transport: 'websocket', clients: 1_000, p50Ms: 6, p99Ms: 15 },
    { transport: 'long-poll', clients: 10_000, p50Ms: 90, p99Ms: 300 },
    { transport: 'websocket', clients: 10_000, p50Ms: 30, p99Ms: 1_440, floor: { p99Ms: 500 } },
    { transport: 'long-poll', clients: 1, p50Ms: 2.5, p99Ms: 3 },
    { transport: 'websocket', clients: 1, p50Ms: 0.8, p99Ms: 2 },
  ],
  snapshot: { ratio: 0.41 },
  changes: {
    phases: [
      { label: 'into 1 shape', shapes: 1, ratio: 0.3, recvPerS: 100_000 },
      { label: 'into 1,000 shapes', shapes: 1_000, ratio: 0.6, recvPerS: 100_000 },
    ],
  },
};

test('the chart is well-formed SVG with one point per latency result and percentile, one bar per ratio', () => {
  const svg = renderChart(full, 'Measured <today> & "here"');
  assert.ok(svg);
  assertWellFormedSvg(svg);
  assert.equal(count(svg, /<circle class="point p99 /g), 6);
  assert.equal(count(svg, /<circle class="point p50 /g), 6);
  assert.equal(count(svg, /<circle class="point [^"]*websocket"/g), 7);
  assert.equal(count(svg, /<circle class="point floor /g), 2);
  assert.equal(count(svg, /<polyline /g), 6, 'a p50, a p99 and a floor line per transport');
  assert.match(svg, /bare WebSocket fan-out, 10000 clients: p99 500\.0 ms/);
  assert.equal(count(svg, /<rect class="bar"/g), 3);
  // Two latency targets per transport, one target line per bar.
  assert.equal(count(svg, /<line class="target"/g), 4 + 3);
  assert.match(svg, /WebSocket, 10000 clients: p99 1440\.0 ms/);
  assert.match(svg, /Measured &lt;today&gt; &amp; &quot;here&quot;/);
  // Log scale: 1, 1,000 and 10,000 clients at 0, 3/4 and all of the axis.
  const xs = [...svg.matchAll(/<circle class="point p99 long-poll" cx="([\d.]+)"/g)].map((m) =>
    Number(m[1]),
  );
  assert.deepEqual(xs, [64, 64 + 0.75 * 392, 64 + 392]);
});

test('measures absent from the results are left out; with none, there is no chart', () => {
  const caption = Array.from({ length: 12 }, (_, i) => `part ${i} of a long caption`).join('; ');
  const latencyOnly = renderChart({ latency: full.latency }, caption);
  assert.ok(latencyOnly);
  assertWellFormedSvg(latencyOnly);
  assert.equal(count(latencyOnly, /<rect class="bar"/g), 0);
  assert.match(latencyOnly, /width="480"/);
  // A caption wider than one panel is broken into lines, nothing lost.
  const lines = [...latencyOnly.matchAll(/<text [^>]*fill="#555">([^<]*)<\/text>/g)].map(
    (m) => m[1],
  );
  assert.ok(lines.length > 1);
  assert.ok(lines.every((line) => line!.length * 6.5 <= 480));
  assert.equal(lines.join(' '), caption);
  const ratiosOnly = renderChart({ snapshot: full.snapshot, latency: [] }, 'ratios');
  assert.ok(ratiosOnly);
  assertWellFormedSvg(ratiosOnly);
  assert.equal(count(ratiosOnly, /<circle /g), 0);
  assert.equal(count(ratiosOnly, /<rect class="bar"/g), 1);
  assert.equal(renderChart({ latency: undefined, snapshot: undefined }, 'nothing'), undefined);
});
