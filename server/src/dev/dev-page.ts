import { existsSync } from 'node:fs';
import { readFile, realpath } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginCallback, FastifyReply } from 'fastify';
import { HEADERS } from '@sluice/protocol';

/** The repository root, seen from `server/src/dev/` and `server/dist/dev/` alike. */
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

export interface DevPageOptions {
  /** The built `@sluice/client` (`tsc -b`). Default: `client/dist` of this checkout. */
  clientDist?: string;
  /** The built `@sluice/protocol`, which the client imports. Default: `packages/protocol/dist`. */
  protocolDist?: string;
}

/** URL prefixes the page's import map sends the two packages to. */
const CLIENT_PREFIX = '/dev/client/';
const PROTOCOL_PREFIX = '/dev/protocol/';

/**
 * Development only: `GET /` is a page that follows one shape with `@sluice/client` and shows its
 * rows and the stream's mode (`live` or `fallback`); `?table=` picks the table (default
 * `demo_items`), `?where=` and `?secret=` are passed on. The browser loads the built client and
 * protocol ESM files from `/dev/client/` and `/dev/protocol/`; only `.js` and `.js.map` files
 * inside those two `dist` folders are served.
 */
export const devPage: FastifyPluginCallback<DevPageOptions> = (app, options, done) => {
  const clientDist = resolve(options.clientDist ?? resolve(repoRoot, 'client/dist'));
  const protocolDist = resolve(options.protocolDist ?? resolve(repoRoot, 'packages/protocol/dist'));

  app.get('/', async (_request, reply) => {
    const built = existsSync(resolve(clientDist, 'index.js'));
    return reply
      .code(built ? 200 : 503)
      .type('text/html; charset=utf-8')
      .header(HEADERS.cacheControl, 'no-store')
      .send(built ? PAGE : notBuiltPage(clientDist));
  });
  app.get(`${CLIENT_PREFIX}*`, async (request, reply) =>
    sendDistFile(reply, clientDist, (request.params as { '*': string })['*']),
  );
  app.get(`${PROTOCOL_PREFIX}*`, async (request, reply) =>
    sendDistFile(reply, protocolDist, (request.params as { '*': string })['*']),
  );
  done();
};

/** A path segment of a build output: no `.`/`..`, no hidden files, nothing but plain characters. */
const SAFE_SEGMENT = /^[\w-][\w.-]*$/;

/** Sends `<root>/<wanted>` when it is a `.js` or `.js.map` file really inside `root`; else 404. */
async function sendDistFile(reply: FastifyReply, root: string, wanted: string): Promise<unknown> {
  const segments = wanted.split('/');
  if (!/\.js(\.map)?$/.test(wanted) || !segments.every((part) => SAFE_SEGMENT.test(part))) {
    return reply.callNotFound();
  }
  let body: Buffer;
  try {
    // realpath: a symbolic link inside dist must not lead out of it either.
    const file = await realpath(resolve(root, ...segments));
    if (!file.startsWith((await realpath(root)) + sep)) return reply.callNotFound();
    body = await readFile(file);
  } catch {
    return reply.callNotFound();
  }
  return reply
    .type(wanted.endsWith('.map') ? 'application/json' : 'text/javascript; charset=utf-8')
    .header(HEADERS.cacheControl, 'no-store')
    .send(body);
}

function notBuiltPage(clientDist: string): string {
  const where = clientDist.replaceAll('&', '&amp;').replaceAll('<', '&lt;');
  return `<!doctype html><meta charset="utf-8"><title>Sluice</title>
<p>The client is not built (no <code>${where}/index.js</code>): run <code>npx tsc -b</code>
(or <code>npm run build</code>) and reload.</p>\n`;
}

/**
 * The page: plain DOM, no framework. Hooks for tests: `#mode[data-mode]` is `connecting`, then
 * the stream's mode; `#rows[data-row-count]` appears with the first complete data; each row is a
 * `tr[data-key]` with one `td[data-column]` per column (`data-null` on NULLs); `#error` shows the
 * last stream error.
 */
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Sluice</title>
<script type="importmap">
{ "imports": { "@sluice/client": "${CLIENT_PREFIX}index.js", "@sluice/protocol": "${PROTOCOL_PREFIX}index.js" } }
</script>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; }
  #mode { display: inline-block; padding: .3rem .8rem; border-radius: .3rem; background: #ddd; }
  #mode[data-mode="live"] { background: #c8f0c8; }
  #mode[data-mode="fallback"] { background: #ffd98a; }
  #error { color: #b00; }
  table { border-collapse: collapse; margin-top: 1rem; }
  th, td { border: 1px solid #ccc; padding: .2rem .6rem; text-align: left; }
  td[data-null] { color: #999; }
</style>
</head>
<body>
<h1>Shape <code id="shape"></code></h1>
<p><span id="mode" data-mode="connecting">connecting…</span> <span id="count"></span></p>
<p id="error" hidden></p>
<table id="rows"><thead><tr></tr></thead><tbody></tbody></table>
<script type="module">
import { Shape, ShapeStream } from '@sluice/client';

const query = new URLSearchParams(location.search);
const params = { table: query.get('table') || 'demo_items' };
for (const name of ['where', 'secret']) if (query.get(name)) params[name] = query.get(name);
document.getElementById('shape').textContent =
  params.table + (params.where ? ' where ' + params.where : '');

const banner = document.getElementById('mode');
const errorLine = document.getElementById('error');
const table = document.getElementById('rows');
const TEXT = {
  live: 'live: changes arrive as they commit',
  fallback: 'fallback: replication is down, rows are read from Postgres',
};
function showMode(mode) {
  banner.dataset.mode = mode;
  banner.textContent = TEXT[mode] ?? mode;
}
function showError(error) {
  errorLine.hidden = false;
  errorLine.textContent = String(error && error.message ? error.message : error);
}

const stream = new ShapeStream({
  url: new URL('/v1/shape', location.origin).href,
  params,
  onError: (error) => showError(error),
});
stream.onModeChange((mode) => showMode(mode));

const text = (value) =>
  value === null || value === undefined ? 'NULL'
  : typeof value === 'object' ? JSON.stringify(value, (_k, v) => typeof v === 'bigint' ? String(v) : v)
  : String(value);

function render(rowsByKey) {
  const entries = [...rowsByKey].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }));
  const columns = [...new Set(entries.flatMap(([, row]) => Object.keys(row)))];
  table.tHead.rows[0].replaceChildren(...columns.map((name) => {
    const th = document.createElement('th');
    th.textContent = name;
    return th;
  }));
  table.tBodies[0].replaceChildren(...entries.map(([key, row]) => {
    const tr = document.createElement('tr');
    tr.dataset.key = key;
    for (const name of columns) {
      const td = tr.insertCell();
      td.dataset.column = name;
      if (row[name] === null || row[name] === undefined) td.dataset.null = '';
      td.textContent = text(row[name]);
    }
    return tr;
  }));
  table.dataset.rowCount = String(entries.length);
  document.getElementById('count').textContent = entries.length + ' rows';
}

const shape = new Shape(stream);
shape.subscribe(({ value }) => render(value));
</script>
</body>
</html>
`;
