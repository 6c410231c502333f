/**
 * The table of the client's error codes (`SLUICE_ERR_CLIENT_<WHAT>`), each with the `name` of the
 * error that carries it (`@electric-sql/client`'s class names) and a summary. client/README.md
 * lists them ("Errors"), and a test fails when the two disagree.
 *
 * The codes live here, not in `@sluice/protocol` next to the server's `ERROR_CODES`: they never
 * cross the wire (the client raises them and its application reads them), and the page that
 * documents them is the client's own.
 */
export const CLIENT_ERROR_CODES = {
  SLUICE_ERR_CLIENT_HTTP: {
    name: 'FetchError',
    summary:
      'a 4xx other than 409/429, or retries exhausted; has `status`, `json`/`text`, `headers`, `url`',
  },
  SLUICE_ERR_CLIENT_ABORTED: {
    name: 'FetchBackoffAbortError',
    summary: 'a request or backoff wait was cut short by stopping the stream',
  },
  SLUICE_ERR_CLIENT_MISSING_HEADERS: {
    name: 'MissingHeadersError',
    summary: 'a response lacks `electric-handle`/`-offset`/`-cursor`/`-schema` (CORS)',
  },
  SLUICE_ERR_CLIENT_MALFORMED_RESPONSE: {
    name: 'MalformedResponseError',
    summary: 'a body or `electric-schema` that is not what the protocol says',
  },
  SLUICE_ERR_CLIENT_NULL_VALUE: {
    name: 'ParserNullValueError',
    summary: 'a NULL in a `not_null` column',
  },
  SLUICE_ERR_CLIENT_MISSING_URL: {
    name: 'MissingShapeUrlError',
    summary: 'no `url`',
  },
  SLUICE_ERR_CLIENT_MISSING_HANDLE: {
    name: 'MissingShapeHandleError',
    summary: 'an `offset` without its `handle`',
  },
  SLUICE_ERR_CLIENT_INVALID_SIGNAL: {
    name: 'InvalidSignalError',
    summary: '`signal` is not an `AbortSignal`',
  },
  SLUICE_ERR_CLIENT_INVALID_OPTIONS: {
    name: 'InvalidShapeOptionsError',
    summary:
      'an interval that is not a positive number; an unknown `liveTransport`, or `websocket` without a WebSocket',
  },
  SLUICE_ERR_CLIENT_RESERVED_PARAM: {
    name: 'ReservedParamError',
    summary: 'a custom param named `offset`, `handle`, `live`, `cursor` or `cache-buster`',
  },
} as const satisfies Record<`SLUICE_ERR_CLIENT_${string}`, { name: string; summary: string }>;

export type ClientErrorCode = keyof typeof CLIENT_ERROR_CODES;
