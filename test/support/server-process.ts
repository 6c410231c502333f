import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  /** Base URL printed by the server, e.g. http://127.0.0.1:41234 */
  baseUrl: string;
  /** Everything the process printed on stdout so far. */
  stdout(): string;
  /** Sends a signal and resolves the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts the real entry point as a child process and resolves once it prints the address it
 * listens on: from its sources through tsx, or, with `compiled`, the build `npm start` runs
 * (`server/dist/main.js`; `tsc -b` must have run).
 */
export async function startServerProcess(
  env: Record<string, string | undefined>,
  timeoutMs = 120_000,
  compiled = false,
): Promise<ServerProcess> {
  const childEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries({ ...process.env, ...env })) {
    if (value !== undefined) childEnv[key] = value;
  }
  const child = spawn(
    process.execPath,
    compiled
      ? ['server/dist/main.js']
      : ['--conditions=source', '--import', 'tsx', 'server/src/main.ts'],
    { cwd: repoRoot, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );

  const baseUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server did not start:\n${out}\n${err}`)),
      timeoutMs,
    );
    const check = () => {
      const match = /Sluice is listening on (http:\/\/\S+)/.exec(out);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${out}\n${err}`));
    });
  });
  return {
    child,
    baseUrl,
    stdout: () => out,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}
