import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChunkLines } from './chunk-lines.js';
import { scanChunk } from './chunk-file.js';

const texts = ['{"a":1}', '{"s":"é😀\\n\\"q\\""}', '{"lone":"\ud800"}', '{}'];

test('appended lines are the chunk file format, and each JSON text reads back', () => {
  const lines = ChunkLines.empty();
  texts.forEach((json, i) => lines.append(`5_${i}`, json));
  const bytes = lines.bytesOf();
  const file = texts.map((json, i) => `5_${i} ${json}\n`).join('');
  assert.equal(bytes, Buffer.byteLength(file));
  assert.equal(Buffer.concat(lines.slice(0, bytes)).toString(), Buffer.from(file).toString());
  // A lone surrogate is written as UTF-8's replacement character, as a file write would.
  assert.deepEqual(lines.jsons(0, 4), [texts[0], texts[1], '{"lone":"\ufffd"}', texts[3]]);
  assert.equal(lines.lineText(1), `5_1 ${texts[1]}`);
  assert.equal(lines.bytesOf(2), Buffer.byteLength(`5_0 ${texts[0]}\n5_1 ${texts[1]}\n`));
});

test('jsonArray copies a range of entries, then the extra texts, into one JSON array', () => {
  const lines = ChunkLines.empty();
  texts.forEach((json, i) => lines.append(`1_${i}`, json));
  const upToDate = '{"headers":{"control":"up-to-date"}}';
  assert.equal(lines.jsonArray(1, 3, []).toString(), `[${texts[1]},{"lone":"\ufffd"}]`);
  assert.equal(lines.jsonArray(0, 1, [upToDate]).toString(), `[${texts[0]},${upToDate}]`);
  assert.equal(lines.jsonArray(2, 2, [upToDate, '{}']).toString(), `[${upToDate},{}]`);
  assert.equal(lines.jsonArray(0, 0, []).toString(), '[]');
  assert.equal((JSON.parse(lines.jsonArray(0, 4, ['"é"']).toString()) as unknown[]).length, 5);
});

test('views stay valid while the buffer grows; truncate and compact keep what remains', () => {
  const lines = ChunkLines.empty();
  lines.append('1_0', '{"first":true}');
  const view = Buffer.concat(lines.slice(0, lines.bytesOf()));
  const before = view.toString();
  for (let i = 1; i < 1_000; i++)
    lines.append(`1_${i}`, `{"n":${i},"pad":"${'x'.repeat(i % 50)}"}`);
  assert.equal(view.toString(), before, 'a view taken before growth reads what it read');
  lines.truncate(3);
  assert.equal(lines.count, 3);
  lines.append('2_0', '{"after":"cut"}');
  lines.compact();
  assert.deepEqual(lines.jsons(0, 4), [
    '{"first":true}',
    '{"n":1,"pad":"x"}',
    '{"n":2,"pad":"xx"}',
    '{"after":"cut"}',
  ]);
  // What a chunk file holds scans back to the same lines.
  const scanned = scanChunk(Buffer.concat(lines.slice(0, lines.bytesOf())), undefined);
  assert.equal(scanned.corrupt, false);
  assert.deepEqual(scanned.lines.jsons(0, scanned.lines.count), lines.jsons(0, 4));
  assert.equal(scanned.lines.bytesOf(), lines.bytesOf());
});

test('a chunk grows by segments (no line split, none copied): every read crosses them alike', () => {
  const lines = ChunkLines.empty();
  const jsons: string[] = [];
  for (let i = 0; i < 3_000; i++) {
    // Mostly small lines, one larger than a whole segment, some multi-byte characters.
    const pad = i === 1_500 ? 'y'.repeat(100_000) : 'é'.repeat(i % 40);
    jsons.push(`{"n":${i},"pad":"${pad}"}`);
    lines.append(`7_${i}`, jsons[i]!);
  }
  const early = lines.slice(0, lines.bytesOf(10));
  const file = jsons.map((json, i) => `7_${i} ${json}\n`).join('');
  assert.equal(lines.bytesOf(), Buffer.byteLength(file));
  assert.ok(lines.slice(0, lines.bytesOf()).length > 5, 'many segments');
  assert.equal(Buffer.concat(lines.slice(0, lines.bytesOf())).toString(), file);
  // Any byte range reads as the same range of the file.
  const fileBytes = Buffer.from(file);
  for (const [from, to] of [
    [0, 1],
    [5, 70_000],
    [lines.bytesOf(1_499), lines.bytesOf(1_502)],
    [lines.bytesOf(2_000) - 3, lines.bytesOf()],
  ] as const) {
    assert.ok(Buffer.concat(lines.slice(from, to)).equals(fileBytes.subarray(from, to)));
  }
  assert.deepEqual(lines.jsons(0, 3_000), jsons);
  assert.equal(lines.lineText(1_500), `7_1500 ${jsons[1_500]}`);
  assert.equal(
    lines.jsonArray(1_490, 1_510, []).toString(),
    `[${jsons.slice(1_490, 1_510).join(',')}]`,
  );
  // A cut inside a segment: later appends continue there, and the early view is unchanged.
  lines.truncate(2_100);
  lines.append('8_0', '{"after":"cut"}');
  assert.deepEqual(lines.jsons(2_098, 2_101), [jsons[2_098], jsons[2_099], '{"after":"cut"}']);
  assert.ok(Buffer.concat(early).equals(fileBytes.subarray(0, lines.bytesOf(10))));
  lines.compact();
  assert.equal(lines.json(2_100), '{"after":"cut"}');
});
