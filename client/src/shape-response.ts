import { CONTROL, HEADERS } from '@sluice/protocol';
import { MalformedResponseError, MissingHeadersError } from './errors.js';
import type { Offset } from './messages.js';
import type { Schema } from './schema.js';

/** A 200 answer to a shape request, headers read and body split into (unparsed) messages. */
export interface ShapeResponse {
  handle: string;
  offset: Offset;
  cursor?: string;
  /** `electric-schema`, sent on non-live responses. */
  schema?: Schema;
  fallbackMode: boolean;
  /** The messages as JSON gave them: values are still Postgres text. */
  messages: Record<string, unknown>[];
  upToDate: boolean;
}

function parseJson(text: string, url: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new MalformedResponseError(url, `${what} is not JSON`, { cause: error });
  }
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Reads a shape response (docs/protocol.md §4–5, §7). Every one must name the handle and offset; a
 * live one its cursor too. Missing headers are nearly always a proxy's CORS settings, and are
 * reported as such rather than followed into a loop.
 */
export async function readShapeResponse(
  response: Response,
  url: string,
  live: boolean,
): Promise<ShapeResponse> {
  const { headers } = response;
  const required = [HEADERS.handle, HEADERS.offset, ...(live ? [HEADERS.cursor] : [])];
  const missing = required.filter((name) => !headers.has(name));
  if (missing.length > 0) throw new MissingHeadersError(url, missing);

  const schemaText = headers.get(HEADERS.schema);
  const schema = schemaText ? parseJson(schemaText, url, HEADERS.schema) : undefined;
  if (schema !== undefined && !isObject(schema))
    throw new MalformedResponseError(url, `${HEADERS.schema} is not an object`);

  const text = await response.text();
  const body = text === '' ? [] : parseJson(text, url, 'the body');
  if (!Array.isArray(body) || !body.every((m) => isObject(m) && isObject(m.headers)))
    throw new MalformedResponseError(url, 'the body is not an array of messages');
  const last = body.at(-1) as { headers: Record<string, unknown> } | undefined;

  return {
    handle: headers.get(HEADERS.handle) ?? '',
    offset: (headers.get(HEADERS.offset) ?? '-1') as Offset,
    cursor: headers.get(HEADERS.cursor) ?? undefined,
    schema: schema as Schema | undefined,
    fallbackMode: headers.get(HEADERS.fallbackMode) === 'true',
    messages: body as Record<string, unknown>[],
    upToDate: last?.headers.control === CONTROL.upToDate,
  };
}
