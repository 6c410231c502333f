import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChunkLines } from './chunk-lines.js';
import { scanChunk } from './chunk-file.js';

/** Where the chunk would be sealed: small, so that its buffer is sized for bulk early. */
const LIMIT = 4_096;

const texts = ['{"a":1}', '{"s":"é😀\\n\\"q\\""}', '{"lone":"\ud800"}', '{}'];

test('appended lines are the chunk file format, and each JSON text reads back', () => {
  const lines = ChunkLines.empty();
  texts.forEach((json, i) => lines.append(`5_${i}`, json, LIMIT));
  const bytes = lines.bytesOf();
  const file = texts.map((json, i) => `5_${i} ${json}\n`).join('');
  assert.equal(bytes, Buffer.byteLength(file));
  assert.equal(lines.slice(0, bytes).toString(), Buffer.from(file).toString());
  // A lone surrogate is written as UTF-8's replacement character, as a file write would.
  assert.deepEqual(lines.jsons(0, 4), [texts[0], texts[1], '{"lone":"\ufffd"}', texts[3]]);
  assert.equal(lines.lineText(1), `5_1 ${texts[1]}`);
  assert.equal(lines.bytesOf(2), Buffer.byteLength(`5_0 ${texts[0]}\n5_1 ${texts[1]}\n`));
});

test('jsonArray copies a range of entries, then the extra texts, into one JSON array', () => {
  const lines = ChunkLines.empty();
  texts.forEach((json, i) => lines.append(`1_${i}`, json, LIMIT));
  const upToDate = '{"headers":{"control":"up-to-date"}}';
  assert.equal(lines.jsonArray(1, 3, []).toString(), `[${texts[1]},{"lone":"\ufffd"}]`);
  assert.equal(lines.jsonArray(0, 1, [upToDate]).toString(), `[${texts[0]},${upToDate}]`);
  assert.equal(lines.jsonArray(2, 2, [upToDate, '{}']).toString(), `[${upToDate},{}]`);
  assert.equal(lines.jsonArray(0, 0, []).toString(), '[]');
  assert.equal((JSON.parse(lines.jsonArray(0, 4, ['"é"']).toString()) as unknown[]).length, 5);
});

test('views stay valid while the buffer grows; truncate and compact keep what remains', () => {
  const lines = ChunkLines.empty();
  lines.append('1_0', '{"first":true}', LIMIT);
  const view = lines.slice(0, lines.bytesOf());
  const before = view.toString();
  for (let i = 1; i < 1_000; i++)
    lines.append(`1_${i}`, `{"n":${i},"pad":"${'x'.repeat(i % 50)}"}`, LIMIT);
  assert.equal(view.toString(), before, 'a view taken before growth reads what it read');
  lines.truncate(3);
  assert.equal(lines.count, 3);
  lines.append('2_0', '{"after":"cut"}', LIMIT);
  lines.compact();
  assert.deepEqual(lines.jsons(0, 4), [
    '{"first":true}',
    '{"n":1,"pad":"x"}',
    '{"n":2,"pad":"xx"}',
    '{"after":"cut"}',
  ]);
  // What a chunk file holds scans back to the same lines.
  const scanned = scanChunk(Buffer.from(lines.slice(0, lines.bytesOf())), undefined);
  assert.equal(scanned.corrupt, false);
  assert.deepEqual(scanned.lines.jsons(0, scanned.lines.count), lines.jsons(0, 4));
  assert.equal(scanned.lines.bytesOf(), lines.bytesOf());
});
