import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';

// The client runs unchanged in browsers: `dist/index.js` is loaded as an ES module, with only an
// import map for `@sluice/protocol` (client/README.md). So the code that ships (everything but the
// tests, here and in the protocol package) may import nothing but relative `.js` files and
// `@sluice/protocol`, and may use no Node-only global.

const sources = (dir: URL) =>
  readdirSync(dir)
    .filter((name) => name.endsWith('.ts') && !name.endsWith('.test.ts'))
    .map((name) => ({ name, text: readFileSync(new URL(name, dir), 'utf8') }));

const SHIPPED = [
  ...sources(new URL('./', import.meta.url)),
  ...sources(new URL('../../packages/protocol/src/', import.meta.url)),
];

/** Module specifiers of runtime imports and re-exports (`import type` is erased). */
function runtimeImports(text: string): string[] {
  const statements = text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?from\s+'([^']+)'/gms);
  return [...statements].map((match) => match[1] ?? '');
}

test('shipped code imports only relative .js files and @sluice/protocol', () => {
  assert.ok(SHIPPED.length > 10);
  for (const { name, text } of SHIPPED) {
    for (const specifier of runtimeImports(text)) {
      assert.ok(
        specifier === '@sluice/protocol' || /^\.\.?\/[\w./-]+\.js$/.test(specifier),
        `${name} imports "${specifier}"`,
      );
    }
  }
});

test('shipped code uses no Node-only global', () => {
  // A free-standing name, not a member (`this.#process(…)`, `x.require(…)`).
  const nodeOnly = /(?<![#.\w])(process|Buffer|require|__dirname|__filename|global)\s*[.(]/;
  for (const { name, text } of SHIPPED) {
    const code = text.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    assert.doesNotMatch(code, nodeOnly, name);
    assert.doesNotMatch(code, /from\s+'node:/, name);
  }
});
