// Generated HTTP requests for the fuzz test (test/faults/fuzz.test.ts): shape requests with random
// and mutated parameters, odd paths, methods and headers, long values, NUL and control bytes and
// percent-encodings that are not UTF-8. Every piece a client could smuggle into SQL or a file
// name carries `marker`, so the test can look for it where it must never be.

/** A seeded PRNG (mulberry32): the same seed makes the same requests, to replay a failure. */
export class Random {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** In [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(max: number): number {
    return Math.floor(this.next() * max);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

/** One request as bytes on the wire. */
export interface FuzzRequest {
  method: string;
  bytes: Buffer;
  /** For reports: the request line, as sent. */
  summary: string;
}

const METHODS = [
  ...Array<string>(14).fill('GET'),
  'HEAD',
  'POST',
  'DELETE',
  'DELETE',
  'OPTIONS',
  'PUT',
  'PATCH',
];

/** Valid clause pieces over `items (id int, title text)`: the base mutations start from. */
const WHERE_ATOMS = [
  'id = 1',
  'id > 2',
  'id <> 3',
  "title = 'a'",
  "title LIKE 'a%'",
  'id IN (1, 2, 3)',
  'title IS NULL',
  'NOT (id < 5)',
  "id::text = '1'",
  "lower(title) = 'x'",
  'id = $1',
  'title = $1',
  'id BETWEEN 1 AND 10',
  "title ILIKE '%b'",
  'id + 1 > 2 * id',
  "coalesce(title, '') <> ''",
];

function injections(m: string): string[] {
  return [
    `1=1; DROP TABLE ${m}`,
    `id = 1) OR (1=1`,
    `${m}(id) = 1`,
    `"${m}" = 1`,
    `${m} = 1`,
    `id = (SELECT 1 FROM ${m})`,
    `EXISTS (SELECT 1 FROM pg_class AS ${m})`,
    `pg_sleep(10) IS NULL`,
    `id = 1 -- ${m}`,
    `id = 1 /* ${m} */`,
    `id = 1 UNION SELECT ${m}`,
    `id = 1; COPY items TO '/tmp/${m}'`,
    `pg_read_file('/etc/passwd') = '${m}'`,
    `title = current_setting('${m}')`,
    `id::${m} = 1`,
    `title COLLATE "${m}" = 'a'`,
    `(id = 1)::${m}`,
    `id = ANY('{1}'::${m}[])`,
    `$$${m}$$`,
    `id = 1 \\g ${m}`,
    `';${m}`,
    `"; ${m} --`,
    `id = 1 AND ${m}.id = 2`,
    `items.${m} = 1`,
    `public.${m}.id = 1`,
    `set_config('${m}', 'x', false) = 'x'`,
    `lo_export(1, '/tmp/${m}') = 1`,
  ];
}

function mutate(r: Random, text: string, m: string): string {
  let out = text;
  const edits = r.int(4);
  for (let i = 0; i < edits; i++) {
    const at = r.int(out.length + 1);
    switch (r.int(6)) {
      case 0:
        out = out.slice(0, at) + out.slice(at + 1 + r.int(4));
        break;
      case 1:
        out =
          out.slice(0, at) +
          r.pick(['(', ')', "'", '"', ';', '$', '\\', ',', '::', ' ']) +
          out.slice(at);
        break;
      case 2:
        out = out.slice(0, at) + String.fromCharCode(r.int(32)) + out.slice(at);
        break;
      case 3:
        out = out.slice(0, at) + ` ${m} ` + out.slice(at);
        break;
      case 4:
        out = out.slice(0, at);
        break;
      default:
        out =
          out.slice(0, at) +
          r.pick(['é', '\u{1F600}', '\uFFFD', '\u202E', '\u0000']) +
          out.slice(at);
    }
  }
  return out;
}

function whereClause(r: Random, m: string): string {
  const pieces: string[] = [];
  const count = 1 + r.int(3);
  for (let i = 0; i < count; i++) {
    pieces.push(r.chance(0.5) ? r.pick(WHERE_ATOMS) : r.pick(injections(m)));
  }
  let clause = pieces.join(r.pick([' AND ', ' OR ', ' ', ', ']));
  if (r.chance(0.5)) clause = mutate(r, clause, m);
  if (r.chance(0.05)) clause = `${'('.repeat(200 + r.int(2000))}id = 1${')'.repeat(200)}`;
  if (r.chance(0.05))
    clause = Array.from({ length: 300 + r.int(3000) }, () => 'id = 1').join(' OR ');
  return clause;
}

function longValue(r: Random, m: string): string {
  return `${m}${'x'.repeat(1_000 + r.int(20_000))}`;
}

/** A value for `key`, valid often enough to reach deep code, hostile the rest of the time. */
function paramValue(r: Random, key: string, m: string): string {
  if (r.chance(0.03)) return longValue(r, m);
  if (r.chance(0.03)) return `${m}\u0000${m}`;
  switch (key) {
    case 'table':
      return r.pick([
        'items',
        'items',
        'public.items',
        '"items"',
        'ITEMS',
        'public."items"',
        'pg_catalog.pg_class',
        'information_schema.tables',
        'pg_authid',
        'pg_toast.x',
        m,
        `items; DROP TABLE ${m}`,
        `"${m}"."x"`,
        `../../${m}`,
        `public.${m}`,
        `"it""ems${m}"`,
        '',
        '.',
        'a.b.c',
        `items${String.fromCharCode(r.int(32))}`,
        'ıtems',
      ]);
    case 'where':
      return whereClause(r, m);
    case 'columns':
      return r.pick([
        'id,title',
        'id',
        'title',
        '"id"',
        'id,id',
        '',
        '*',
        m,
        `id,${m}`,
        'id,"title"',
        'ID',
        ',',
        `"${m}"`,
      ]);
    case 'offset':
      return r.pick([
        '-1',
        '-1',
        'now',
        '0_0',
        '0_inf',
        '1_0',
        '-2',
        'abc',
        '99999999999999999999999_0',
        `${r.int(1e9)}_${r.int(100)}`,
        '0_-1',
        '_',
        m,
      ]);
    case 'handle':
      return r.pick([
        m,
        '../../etc',
        `${m}-${r.int(1e6)}`,
        '',
        'a'.repeat(129),
        `..%2F${m}`,
        '0-0',
      ]);
    case 'live':
      return r.pick(['true', 'false', '1', '', 'TRUE', m]);
    case 'cursor':
      return r.pick([String(r.int(1e9)), '-1', '', m, '1e999']);
    case 'replica':
      return r.pick(['default', 'full', '', m]);
    case 'log':
      return r.pick(['changes_only', 'full', '', m]);
    case 'secret':
      return r.pick(['', m, 'x']);
    default:
      return r.pick(['1', 'true', '$1', m, `'${m}'`, String(r.int(100))]);
  }
}

/** Percent-encodes most of the time; sometimes leaves bytes raw or adds encodings of bad UTF-8. */
function encode(r: Random, text: string): string {
  let out = encodeURIComponent(text.replaceAll(/[\uD800-\uDFFF]/g, ''));
  if (r.chance(0.03))
    out += r.pick(['%FF', '%C0%AF', '%E2%82', '%00', '%', '%zz', '%ED%A0%80', '+', '%2B']);
  return out;
}

/** A well-formed shape request, to get past validation into the registry, the logs and SQL. */
function cleanShapeQuery(r: Random, m: string): string {
  const query = new URLSearchParams({ table: r.pick(['items', 'public.items', '"items"']) });
  query.set('offset', r.pick(['-1', '-1', 'now', '0_0', '0_inf']));
  if (query.get('offset') !== '-1' && r.chance(0.7)) query.set('handle', `h${r.int(100)}`);
  if (r.chance(0.3)) query.set('live', 'true');
  if (r.chance(0.7)) {
    // The marker as a value: Postgres sees it, quoted, in the snapshot's statement.
    const atom = r.pick([...WHERE_ATOMS, `title = '${m}'`, `title <> 'it''s ${m}\\'`]);
    query.set('where', atom);
    if (atom.includes('$1')) query.set('params[1]', r.pick(['1', '2', `${m}'s`, m]));
  }
  if (r.chance(0.3)) query.set('columns', r.pick(['id,title', 'id']));
  if (r.chance(0.2)) query.set('replica', r.pick(['default', 'full']));
  return query.toString();
}

function shapeQuery(r: Random, m: string): string {
  if (r.chance(0.3)) return cleanShapeQuery(r, m);
  const keys = ['table', 'offset'];
  for (const key of ['where', 'columns', 'handle', 'live', 'cursor', 'replica', 'log', 'secret']) {
    if (r.chance(key === 'where' ? 0.6 : 0.25)) keys.push(key);
  }
  if (r.chance(0.1)) keys.splice(r.int(keys.length), 1);
  if (r.chance(0.1)) keys.push(r.pick(keys));
  if (r.chance(0.1)) keys.push(r.pick([m, 'params', 'cache-buster', 'subset__where', '']));
  const parts = keys.map((key) => `${encode(r, key)}=${encode(r, paramValue(r, key, m))}`);
  if (keys.includes('where') || r.chance(0.1)) {
    const count = r.int(3);
    for (let i = 1; i <= count; i++) {
      const key = r.chance(0.9)
        ? `params[${i}]`
        : r.pick([`params[${m}]`, 'params[0]', 'params[]', 'params']);
      const value = r.pick([
        '1',
        'a',
        '',
        m,
        `' OR 1=1 --${m}`,
        `${m}'); DROP TABLE items; --`,
        '\u0000',
      ]);
      parts.push(`${encode(r, key)}=${encode(r, value)}`);
    }
  }
  if (r.chance(0.05)) parts.push(r.pick(['&', '=', '==', 'table', '%26']));
  return parts.join('&');
}

function path(r: Random, m: string): string {
  return r.pick([
    '/v1/shape',
    '/v1/shape',
    '/v1/shape',
    '/v1/shape/',
    '/V1/SHAPE',
    '/v1/shape/../v1/status',
    '/v1/./shape',
    `/../../etc/passwd`,
    `/%2e%2e/%2e%2e/etc/passwd`,
    `/%2e%2e%2f%2e%2e%2f${m}`,
    `/v1/shape%2F..%2F${m}`,
    `/..%5c..%5c${m}`,
    '/v1/%00',
    `/${m}`,
    '//v1//shape',
    '/metrics',
    '/v1/health',
    '/v1/status',
    '/',
    `/v1/${'a'.repeat(5_000 + r.int(10_000))}`,
    '/v1/shape%FF',
    `/v1/shape;${m}`,
    '*',
    `http://127.0.0.1/v1/shape`,
    `/v1/shape#${m}`,
  ]);
}

function headers(r: Random, m: string): string[] {
  const lines: string[] = [];
  const pool = [
    `if-none-match: "${m}"`,
    `authorization: Bearer ${m}`,
    `authorization: Basic ${Buffer.from(m).toString('base64')}`,
    `x-forwarded-for: ${r.int(256)}.${r.int(256)}.0.1, ${m}`,
    `origin: https://${m}.example`,
    'access-control-request-method: GET',
    `access-control-request-headers: ${m}`,
    'accept-encoding: gzip, br, deflate',
    'accept: */*',
    `cookie: ${m}=1`,
    `x-${m}: ${m}`,
    `range: bytes=0-${r.int(100)}`,
    `content-type: application/json`,
    `user-agent: ${m}`,
    `x-long: ${'y'.repeat(r.chance(0.2) ? 20_000 : 1_000)}`,
    `x-ctl: a${String.fromCharCode(1 + r.int(31))}b`,
    `x-bytes: \u00ff\u00fe${m}`,
    `expect: 100-continue`,
  ];
  const count = r.int(4);
  for (let i = 0; i < count; i++) lines.push(r.pick(pool));
  return lines;
}

/** One generated request, as raw HTTP/1.1 bytes on a `connection: close` connection. */
export function fuzzRequest(r: Random, m: string): FuzzRequest {
  const method = r.chance(0.02) ? r.pick(['FOO', 'get', 'CONNECT', 'TRACE', '']) : r.pick(METHODS);
  const target = r.chance(0.8) ? '/v1/shape' : path(r, m);
  const query = target.startsWith('/v1/shape') || r.chance(0.2) ? `?${shapeQuery(r, m)}` : '';
  let requestLine = `${method} ${target}${query} HTTP/1.1`;
  if (r.chance(0.01)) requestLine = `${method} ${target}${query}\u0000 HTTP/1.1`;
  if (r.chance(0.01)) requestLine = `${method} ${target}${query} HTTP/9.9`;
  const lines = [requestLine, 'host: 127.0.0.1', 'connection: close', ...headers(r, m)];
  let body = '';
  if (method === 'POST' || method === 'PUT' || r.chance(0.02)) {
    body = r.pick(['{}', `{"table":"${m}"}`, m, '\u0000\u0001\u0002', 'x'.repeat(r.int(100_000))]);
    lines.push(
      r.chance(0.9)
        ? `content-length: ${Buffer.byteLength(body, 'latin1')}`
        : 'transfer-encoding: chunked',
    );
    if (lines.at(-1) === 'transfer-encoding: chunked')
      body = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
  }
  // `latin1`: every char below 256 becomes that byte, so \u00ff is a lone 0xFF (not UTF-8).
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  return {
    method,
    bytes: Buffer.concat([head, Buffer.from(body, 'latin1')]),
    summary: requestLine.slice(0, 300),
  };
}
