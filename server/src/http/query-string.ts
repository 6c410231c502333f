import fastQuerystring from 'fast-querystring';

/**
 * A URL's query string as request handlers see it: Fastify's router and `LongPollPark` both read
 * with this one function, so a request reads alike whichever takes it.
 */
export function parseQueryString(text: string): Record<string, string | string[]> {
  return text.length === 0
    ? {}
    : (fastQuerystring.parse(text) as Record<string, string | string[]>);
}
