/**
 * Every error the client raises. Each has a stable `code` from the table in `error-codes.ts`
 * (`satisfies` makes a code the table lacks a compile error) and its own `name`; class names
 * follow `@electric-sql/client`, so `instanceof` checks and `error.name` comparisons written for
 * it keep working. client/README.md lists the codes.
 */
import { HEADERS } from '@sluice/protocol';
import type { ClientErrorCode } from './error-codes.js';

/** An HTTP status the client does not handle itself (a 4xx other than 409 and 429, or retries exhausted). */
export class FetchError extends Error {
  readonly code = 'SLUICE_ERR_CLIENT_HTTP' satisfies ClientErrorCode;
  readonly status: number;
  /** The body, when it was not JSON. */
  readonly text?: string;
  /** The body, when it was JSON (Sluice's errors carry their own `code` and `message`). */
  readonly json?: object;
  readonly headers: Record<string, string>;
  readonly url: string;

  constructor(
    status: number,
    body: { text?: string; json?: object },
    headers: Record<string, string>,
    url: string,
  ) {
    super(`HTTP Error ${status} at ${url}: ${body.text ?? JSON.stringify(body.json)}`);
    this.name = 'FetchError';
    this.status = status;
    this.text = body.text;
    this.json = body.json;
    this.headers = headers;
    this.url = url;
  }

  static async fromResponse(response: Response, url: string): Promise<FetchError> {
    const headers = Object.fromEntries(response.headers.entries());
    const text = await response.text().catch(() => '');
    let json: object | undefined;
    if (response.headers.get(HEADERS.contentType)?.includes('application/json')) {
      try {
        json = JSON.parse(text) as object;
      } catch {
        // A body that claims to be JSON but is not is still worth showing as text.
      }
    }
    return new FetchError(response.status, json ? { json } : { text }, headers, url);
  }
}

/** A request or a backoff wait was cut short because the stream was stopped. */
export class FetchBackoffAbortError extends Error {
  readonly code = 'SLUICE_ERR_CLIENT_ABORTED' satisfies ClientErrorCode;
  constructor() {
    super('Fetch with backoff aborted');
    this.name = 'FetchBackoffAbortError';
  }
}

export class MissingShapeUrlError extends Error {
  readonly code = 'SLUICE_ERR_CLIENT_MISSING_URL' satisfies ClientErrorCode;
  constructor() {
    super('Invalid shape options: missing required url parameter');
    this.name = 'MissingShapeUrlError';
  }
}

export class InvalidSignalError extends Error {
  readonly code = 'SLUICE_ERR_CLIENT_INVALID_SIGNAL' satisfies ClientErrorCode;
  constructor() {
    super('Invalid signal option. It must be an instance of AbortSignal.');
    this.name = 'InvalidSignalError';
  }
}

export class MissingShapeHandleError extends Error {
  readonly code = 'SLUICE_ERR_CLIENT_MISSING_HANDLE' satisfies ClientErrorCode;
  constructor() {
    super("shapeHandle is required if this isn't an initial fetch (i.e. offset > -1)");
    this.name = 'MissingShapeHandleError';
  }
}

export class InvalidShapeOptionsError extends Error {
  readonly code = 'SLUICE_ERR_CLIENT_INVALID_OPTIONS' satisfies ClientErrorCode;
  constructor(message: string) {
    super(`Invalid shape options: ${message}`);
    this.name = 'InvalidShapeOptionsError';
  }
}

/** Custom params may not use the names the stream itself sets on every request. */
export class ReservedParamError extends Error {
  readonly code = 'SLUICE_ERR_CLIENT_RESERVED_PARAM' satisfies ClientErrorCode;
  constructor(reservedParams: string[]) {
    super(
      `Cannot use reserved Electric parameter names in custom params: ${reservedParams.join(', ')}`,
    );
    this.name = 'ReservedParamError';
  }
}

/** A NULL arrived in a column the schema marks `not_null`. */
export class ParserNullValueError extends Error {
  readonly code = 'SLUICE_ERR_CLIENT_NULL_VALUE' satisfies ClientErrorCode;
  constructor(columnName: string) {
    super(`Column "${columnName}" does not allow NULL values`);
    this.name = 'ParserNullValueError';
  }
}

/**
 * A response lacks a header the protocol requires. Usually a proxy that does not expose the
 * `electric-*` headers to the browser (CORS `access-control-expose-headers`).
 */
export class MissingHeadersError extends Error {
  readonly code = 'SLUICE_ERR_CLIENT_MISSING_HEADERS' satisfies ClientErrorCode;
  constructor(url: string, missingHeaders: string[]) {
    super(
      `The response for the shape request to ${url} didn't include the following required headers: ` +
        `${missingHeaders.join(', ')}. This is often due to a proxy not exposing them (CORS).`,
    );
    this.name = 'MissingHeadersError';
  }
}

/** A body or header that is not what the protocol says it is (not JSON, not an array, …). */
export class MalformedResponseError extends Error {
  readonly code = 'SLUICE_ERR_CLIENT_MALFORMED_RESPONSE' satisfies ClientErrorCode;
  constructor(url: string, what: string, options?: { cause?: unknown }) {
    super(`Malformed response from ${url}: ${what}`, options);
    this.name = 'MalformedResponseError';
  }
}
