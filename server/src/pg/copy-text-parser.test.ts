import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import {
  CopyParseError,
  CopyTextParser,
  parseCopyTextBatches,
  unescapeCopyField,
  type CopyRow,
} from './copy-text-parser.js';

function parseAll(chunks: Buffer[], options?: { columns?: number }): CopyRow[] {
  const parser = new CopyTextParser(options);
  const rows = chunks.flatMap((chunk) => parser.push(chunk));
  parser.end();
  return rows;
}

function chunked(data: Buffer, sizes: (index: number) => number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let pos = 0, i = 0; pos < data.length; i++) {
    const size = Math.max(1, sizes(i));
    chunks.push(data.subarray(pos, pos + size));
    pos += size;
  }
  return chunks;
}

const SAMPLE = Buffer.from(
  [
    '1\thello\t\\N\t\n',
    '2\ttab\\there\tnew\\nline\\r\\n\tback\\\\slash\n',
    '3\t\\b\\f\\v\t日本語 😀\t\\\\N\n',
    '4\t\\N\t\\N\t\\N\n',
  ].join(''),
  'utf8',
);
const SAMPLE_ROWS: CopyRow[] = [
  ['1', 'hello', null, ''],
  ['2', 'tab\there', 'new\nline\r\n', 'back\\slash'],
  ['3', '\b\f\v', '日本語 😀', '\\N'],
  ['4', null, null, null],
];

test('parses rows, NULLs, empty strings and the standard escapes', () => {
  assert.deepEqual(parseAll([SAMPLE]), SAMPLE_ROWS);
});

test('the same rows come out whatever the chunking, including 1-byte chunks inside UTF-8 characters', () => {
  assert.deepEqual(parseAll(chunked(SAMPLE, () => 1)), SAMPLE_ROWS);
  for (let seed = 1; seed <= 200; seed++) {
    let state = seed;
    const random = () => ((state = (state * 1103515245 + 12345) % 2147483648), state % 17);
    assert.deepEqual(parseAll(chunked(SAMPLE, random)), SAMPLE_ROWS, `seed ${seed}`);
  }
  // Every possible split into two chunks.
  for (let cut = 0; cut <= SAMPLE.length; cut++) {
    assert.deepEqual(parseAll([SAMPLE.subarray(0, cut), SAMPLE.subarray(cut)]), SAMPLE_ROWS);
  }
});

test('octal and hex escapes are bytes, so they can spell multi-byte characters', () => {
  assert.equal(unescapeCopyField('\\101\\x42\\x4'), 'AB\x04');
  assert.equal(unescapeCopyField('\\303\\251t\\xC3\\xA9'), 'été');
  assert.equal(unescapeCopyField('\\1234'), 'S4'); // at most three octal digits
  assert.equal(unescapeCopyField('\\x414'), 'A4'); // at most two hex digits
  assert.equal(unescapeCopyField('\\xZ'), 'xZ'); // \x without a hex digit is just x
  assert.equal(unescapeCopyField('a\\n\\101'), 'a\nA');
  assert.equal(unescapeCopyField('\\\\101'), '\\101'); // an escaped backslash, not an octal escape
  assert.equal(unescapeCopyField('\\q\\"\\😀'), 'q"😀'); // any other character stands for itself
  assert.equal(unescapeCopyField('a\\Nb'), 'aNb'); // \N means NULL only as the whole field
  assert.throws(() => unescapeCopyField('abc\\'), CopyParseError);
});

test('column count check, zero-column rows and the \\. end marker', () => {
  assert.deepEqual(parseAll([Buffer.from('a\tb\n')], { columns: 2 }), [['a', 'b']]);
  assert.throws(
    () => parseAll([Buffer.from('a\tb\n')], { columns: 3 }),
    /has 2 fields, expected 3/,
  );
  assert.deepEqual(parseAll([Buffer.from('\n\n')], { columns: 0 }), [[], []]);
  assert.deepEqual(parseAll([Buffer.from('\n')]), [['']]);
  assert.deepEqual(parseAll([Buffer.from('a\n\\.\n')]), [['a']]);
});

test('end() refuses input that stops in the middle of a row', () => {
  const parser = new CopyTextParser();
  assert.deepEqual(parser.push(Buffer.from('a\tb\nc\t')), [['a', 'b']]);
  assert.throws(() => parser.end(), CopyParseError);
});

test('parseCopyTextBatches over an async iterable of chunks', async () => {
  const source = () =>
    Readable.from(chunked(SAMPLE, () => 3).map((chunk) => new Uint8Array(chunk)));
  const batches: CopyRow[][] = [];
  for await (const batch of parseCopyTextBatches(source())) batches.push(batch);
  assert.ok(batches.every((batch) => batch.length > 0));
  assert.deepEqual(batches.flat(), SAMPLE_ROWS);
});

test('the producer may reuse its buffer after push()', () => {
  const parser = new CopyTextParser();
  const shared = Buffer.from('abc\tdé');
  assert.deepEqual(parser.push(shared), []);
  shared.fill(0x21);
  assert.deepEqual(parser.push(Buffer.from('f\n')), [['abc', 'déf']]);
});
