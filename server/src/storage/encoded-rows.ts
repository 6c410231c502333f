/**
 * Rows' JSON texts as UTF-8, back to back: row i is `bytes` from `ends[i - 1]` (0 for the first)
 * to `ends[i]`. The form snapshot rows reach a log in (`ShapeLog.appendSnapshotRows`): made by
 * the row encoder's worker thread, its bytes are copied into the chunk as they are.
 */
export interface EncodedRows {
  bytes: Buffer;
  ends: Int32Array;
}

/** Texts as encoded rows. */
export function encodeRows(texts: readonly string[]): EncodedRows {
  let room = 0;
  // A UTF-16 code unit takes at most 3 bytes in UTF-8.
  for (const text of texts) room += 3 * text.length;
  // Not from Node's shared pool: the worker hands this buffer's memory over whole.
  const bytes = Buffer.allocUnsafeSlow(room);
  const ends = new Int32Array(texts.length);
  let at = 0;
  for (let i = 0; i < texts.length; i++) {
    at += bytes.write(texts[i]!, at, 'utf8');
    ends[i] = at;
  }
  return { bytes: bytes.subarray(0, at), ends };
}
