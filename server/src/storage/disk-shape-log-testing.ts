// Helpers of the disk backend's tests: temporary folders and chunk files read back; not used by
// the server.
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export function makeRoot(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'sluice-shape-log-'));
}

export interface ChunkFileContent {
  name: string;
  sealed: boolean;
  /** Entry lines without their newline. */
  lines: string[];
  offsets: string[];
  jsons: string[];
  entryBytes: number;
}

/** The chunk files as they are on disk, parsed independently of the code under test. */
export async function chunkFiles(dir: string): Promise<ChunkFileContent[]> {
  const names = (await readdir(dir)).filter((name) => /^chunk-\d+\.log$/.test(name)).sort();
  return Promise.all(
    names.map(async (name) => {
      const all = (await readFile(path.join(dir, name), 'utf8')).split('\n').slice(0, -1);
      const sealed = all.at(-1) === '#sealed';
      const lines = sealed ? all.slice(0, -1) : all;
      return {
        name,
        sealed,
        lines,
        offsets: lines.map((line) => line.slice(0, line.indexOf(' '))),
        jsons: lines.map((line) => line.slice(line.indexOf(' ') + 1)),
        entryBytes: lines.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0),
      };
    }),
  );
}
