// What the browser tests share (docs/testing.md, "The browser test"): Debian's Chromium driven by
// playwright-core (no browser is downloaded), skipped without it unless SLUICE_REQUIRE_BROWSER=1
// (CI), where a missing browser fails the test; and the built client the pages load.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export const INSTALL_HINT = 'install it with `apt-get install chromium` (or set CHROMIUM_PATH)';

/** `CHROMIUM_PATH`, else Debian's (or Ubuntu's) Chromium. */
function findChromium(): string | undefined {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'];
  return candidates.find((path): path is string => !!path && existsSync(path));
}

export const chromiumPath = findChromium();

/** The `skip` option of a browser test: a reason without Chromium, unless it is required. */
export const browserSkip: string | false =
  chromiumPath === undefined && process.env.SLUICE_REQUIRE_BROWSER !== '1'
    ? `no Chromium found; ${INSTALL_HINT} to run the browser test`
    : false;

/** Chromium without sandbox (root in CI) and without any traffic of its own to the internet. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Pages load the built client: bring `client/dist` (and the protocol's) up to date first. */
export async function buildClient(): Promise<void> {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  await promisify(execFile)(process.execPath, [tsc, '-b', 'client'], { cwd: repoRoot });
}
