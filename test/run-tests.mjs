// Runs the test tiers with node's test runner. Tiers are chosen by file name (docs/testing.md):
//   unit    *.test.ts that need nothing          pg      *.pg.test.ts (a throwaway Postgres)
//   redis   *.redis.test.ts (a throwaway Redis)
//   e2e     test/e2e/**/*.test.ts                faults  test/faults/**/*.test.ts
// Node 20's --test takes no globs, so the files are listed here.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const searchRoots = ['packages', 'server', 'client', 'test'];

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (entry.name === 'node_modules' || entry.name === 'dist' || entry.name.startsWith('.'))
      return [];
    const path = join(dir, entry.name);
    return entry.isDirectory() ? walk(path) : [path];
  });
}

function tierOf(file) {
  const rel = relative(root, file).split(sep).join('/');
  if (!rel.endsWith('.test.ts')) return undefined;
  if (rel.startsWith('test/e2e/')) return 'e2e';
  if (rel.startsWith('test/faults/')) return 'faults';
  if (rel.endsWith('.redis.test.ts')) return 'redis';
  return rel.endsWith('.pg.test.ts') ? 'pg' : 'unit';
}

const tiers = ['unit', 'pg', 'redis', 'e2e', 'faults'];
const wanted = process.argv[2] ?? 'all';
if (wanted !== 'all' && !tiers.includes(wanted)) {
  console.error(`unknown tier "${wanted}"; use one of: all, ${tiers.join(', ')}`);
  process.exit(2);
}
const files = searchRoots
  .flatMap((dir) => walk(join(root, dir)))
  .filter((file) => {
    const tier = tierOf(file);
    return tier !== undefined && (wanted === 'all' || tier === wanted);
  })
  .sort((a, b) => tiers.indexOf(tierOf(a)) - tiers.indexOf(tierOf(b)) || a.localeCompare(b));

const args = [
  '--conditions=source',
  '--import',
  'tsx',
  '--test',
  '--test-reporter=spec',
  `--test-concurrency=${process.env.TEST_CONCURRENCY ?? 2}`,
  '--test-timeout=300000',
  ...files.map((file) => relative(root, file)),
];
const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
