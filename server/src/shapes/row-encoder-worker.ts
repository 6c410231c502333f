// The row encoder's thread (row-encoder.ts): COPY TEXT chunks in, snapshot rows' JSON out, as
// UTF-8 bytes handed over whole.
import { parentPort } from 'node:worker_threads';
import { CopyTextParser } from '../pg/copy-text-parser.js';
import { encodeRows } from '../storage/encoded-rows.js';
import { snapshotMessageBuilder } from './change-messages.js';
import type { EncoderReply, EncoderRequest } from './row-encoder.js';

interface Job {
  parser: CopyTextParser;
  build: (values: readonly (string | null)[]) => string;
}

const jobs = new Map<number, Job>();
const port = parentPort!;

port.on('message', (request: EncoderRequest) => {
  const { job: id } = request;
  if (request.type === 'start') {
    const { context, select } = request;
    const parser = new CopyTextParser({ columns: select.length });
    jobs.set(id, { parser, build: snapshotMessageBuilder(context, select) });
    return;
  }
  const job = jobs.get(id);
  // Cancelled, or failed: nothing more is owed.
  if (request.type === 'cancel' || !job) {
    jobs.delete(id);
    return;
  }
  try {
    let texts: string[] = [];
    if (request.type === 'copy') {
      texts = job.parser.push(new Uint8Array(request.bytes)).map(job.build);
    } else {
      jobs.delete(id);
      job.parser.end();
    }
    const { bytes, ends } = encodeRows(texts);
    // Memory of their own (never shared, nor Node's pool), handed over rather than copied.
    const memory = bytes.buffer as ArrayBuffer;
    const reply: EncoderReply = {
      type: 'rows',
      job: id,
      bytes: memory,
      length: bytes.length,
      ends,
    };
    port.postMessage(reply, [memory, ends.buffer as ArrayBuffer]);
  } catch (error) {
    jobs.delete(id);
    const { name, message } = error instanceof Error ? error : new Error(String(error));
    port.postMessage({ type: 'error', job: id, name, message } satisfies EncoderReply);
  }
});
