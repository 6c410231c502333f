import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { httpRequest } from './bench-support.js';

/** The floor of measure 3, running (fan-out-floor-server.ts), as the latency bench follows it. */
export interface FloorServer {
  baseUrl: string;
  pid: number | undefined;
  handle: string;
  offset: string;
  fire(id: number): Promise<void>;
  stop(): Promise<void>;
}

const script = fileURLToPath(new URL('./fan-out-floor-server.ts', import.meta.url));

/** Starts the floor server as a child process, as Sluice is started, and waits for its port. */
export async function startFloorServer(table: string): Promise<FloorServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, table], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /^(\d+)\n/.exec(out);
      if (match) resolve(Number(match[1]));
    });
    void exited.then(() => reject(new Error(`the floor server exited before listening: ${out}`)));
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    baseUrl,
    pid: child.pid,
    handle: 'floor',
    offset: '1_0',
    async fire(id) {
      const response = await httpRequest(`${baseUrl}/fire?id=${id}`, { method: 'POST' });
      if (response.status !== 204) throw new Error(`floor /fire: HTTP ${response.status}`);
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
