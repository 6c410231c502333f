import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import { encodeRows, type EncodedRows } from '../storage/encoded-rows.js';
import { snapshotMessageBuilder, type MessageContext } from './change-messages.js';
import { RowEncoder } from './row-encoder.js';

// The row encoder's thread must give exactly the bytes the server's own thread would: the JSON
// `snapshotMessageBuilder` makes of each COPY row, encoded as UTF-8, in order, however the COPY
// stream is cut into chunks.

const execFileAsync = promisify(execFile);
const encoder = new RowEncoder();
after(() => encoder.close());

const context: MessageContext = {
  schema: 'public',
  table: 'items "x"',
  columns: ['id', 'note', 'n'],
  keyColumns: ['id'],
  replica: 'default',
};
const select = ['id', 'note', 'n'];

/** COPY TEXT lines and the rows they stand for (escapes, NULL, characters of 2 to 4 bytes). */
const copyLines: string[] = [];
const rows: (string | null)[][] = [];
for (let i = 0; i < 2_000; i++) {
  const note = i % 5 === 0 ? null : `note ${i} é ✓ 😀 "q" \\ tab\there line\nnext`;
  copyLines.push(
    `${i}\t${note === null ? '\\N' : note.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n')}\t${i * 7}\n`,
  );
  rows.push([String(i), note, String(i * 7)]);
}
const copyBytes = Buffer.from(copyLines.join(''));
const build = snapshotMessageBuilder(context, select);

/** The bytes, cut into chunks of the given sizes in turn (cycling), as a COPY stream would be. */
function chunks(bytes: Buffer, sizes: number[]): AsyncIterable<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length]!;
    parts.push(bytes.subarray(at, at + size));
    at += size;
  }
  return Readable.from(parts);
}

/** Every row of the batches, as JSON texts. */
function texts(batches: EncodedRows[]): string[] {
  return batches.flatMap(({ bytes, ends }) =>
    Array.from(ends, (end, i) => bytes.toString('utf8', i === 0 ? 0 : ends[i - 1], end)),
  );
}

async function collectFrom(
  from: RowEncoder,
  source: AsyncIterable<Uint8Array>,
): Promise<EncodedRows[]> {
  const batches: EncodedRows[] = [];
  for await (const batch of from.encode(source, context, select)) batches.push(batch);
  return batches;
}

const collect = (source: AsyncIterable<Uint8Array>) => collectFrom(encoder, source);

test('rows come back as the JSON the builder makes, byte for byte, however the stream is cut', async () => {
  const expected = rows.map(build);
  for (const sizes of [[copyBytes.length], [1], [7, 3, 64], [4096, 1, 17]]) {
    const batches = await collect(chunks(copyBytes, sizes));
    assert.deepEqual(texts(batches), expected, `chunks of ${sizes.join(', ')} bytes`);
    const bytes = Buffer.concat(batches.map((batch) => batch.bytes));
    assert.ok(bytes.equals(encodeRows(expected).bytes));
  }
});

test('snapshots encoded at the same time each get their own rows, in order', async () => {
  const half = copyLines.length / 2;
  const first = Buffer.from(copyLines.slice(0, half).join(''));
  const second = Buffer.from(copyLines.slice(half).join(''));
  const [a, b] = await Promise.all([
    collect(chunks(first, [300, 5])),
    collect(chunks(second, [11, 900])),
  ]);
  assert.deepEqual(texts(a), rows.slice(0, half).map(build));
  assert.deepEqual(texts(b), rows.slice(half).map(build));
});

test('a malformed stream fails with what the COPY parser found; the encoder goes on', async () => {
  await assert.rejects(collect(chunks(Buffer.from('1\tonly two\n'), [4])), {
    name: 'CopyParseError',
    message: 'COPY row 1 has 2 fields, expected 3',
  });
  await assert.rejects(collect(chunks(Buffer.from('1\ta\t2\n3\tb'), [3])), {
    name: 'CopyParseError',
    message: /ended in the middle of a row/,
  });
  // Leaving early cancels the rest, and later snapshots are served as before.
  for await (const batch of encoder.encode(chunks(copyBytes, [512]), context, select)) {
    assert.ok(batch.ends.length > 0);
    break;
  }
  assert.equal(texts(await collect(chunks(copyBytes, [1 << 20]))).length, rows.length);
});

test('closing fails a snapshot being encoded, and the encoder then refuses new ones', async () => {
  const closing = new RowEncoder();
  async function* stalled(): AsyncGenerator<Buffer> {
    yield Buffer.from('1\ta\t2\n');
    await closing.close();
    yield Buffer.from('2\tb\t3\n');
  }
  await assert.rejects(collectFrom(closing, stalled()), /stopped/);
  await assert.rejects(collectFrom(closing, chunks(copyBytes, [100])), /closed/);
});

test('the thread ends once idle, and the next snapshot starts another', async () => {
  const idle = new RowEncoder({ idleMs: 50 });
  assert.equal(idle.threadRunning, false);
  const once = () => collectFrom(idle, chunks(copyBytes, [4096]));
  assert.equal(texts(await once()).length, rows.length);
  assert.equal(idle.threadRunning, true);
  for (let tries = 0; idle.threadRunning; tries++) {
    assert.ok(tries < 200, 'the idle thread ended');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.equal(texts(await once()).length, rows.length);
  await idle.close();
  assert.equal(idle.threadRunning, false);
});

test('an idle thread does not keep the process alive; one with a job does', async () => {
  // A process that encodes one batch and never closes its encoder, whose thread would idle for
  // a minute: it ends on its own once the batch is back, and it got the batch first.
  const script = `
    const { RowEncoder } = await import(${JSON.stringify(new URL('./row-encoder.ts', import.meta.url).href)});
    const { Readable } = await import('node:stream');
    const encoder = new RowEncoder({ idleMs: 60_000 });
    const context = { schema: 'public', table: 't', columns: ['id'], keyColumns: ['id'], replica: 'default' };
    for await (const batch of encoder.encode(Readable.from([Buffer.from('1\\n')]), context, ['id'])) {
      console.log(batch.ends.length);
    }`;
  const started = performance.now();
  const { stdout } = await execFileAsync(
    process.execPath,
    [...process.execArgv, '--input-type=module', '--eval', script],
    { timeout: 30_000 },
  );
  assert.equal(stdout.trim(), '1');
  assert.ok(performance.now() - started < 30_000);
});
