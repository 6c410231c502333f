import type { ErrorCode } from '@sluice/protocol';

/** What the request parameters at fault, or a wait before retrying, add to a coded error. */
export interface SluiceErrorDetails {
  /** The request parameter at fault: a 400 lists the message under it (`errors`). */
  field?: string;
  /**
   * Several parameters at fault at once, each with its problems: a 400 lists them all. A subset's
   * fields are listed one level down, under `subset` (docs/protocol.md §3.10).
   */
  fields?: Record<string, string[] | Record<string, string[]>>;
  /** Seconds a 503 tells the client to wait (`retry-after`). */
  retryAfterS?: number;
}

/**
 * An error whose code is in `@sluice/protocol`'s table (docs/errors.md). Code throws it wherever
 * the problem is found; the HTTP error handler alone turns it into a response, with the status
 * the table gives the code.
 */
export class SluiceError extends Error {
  override readonly name: string = 'SluiceError';

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: SluiceErrorDetails = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The request parameter `field` cannot make a shape: a 400 listing `message` under it. */
export function shapeInvalid(field: string, message: string): SluiceError {
  return new SluiceError('SLUICE_ERR_SHAPE_INVALID', message, { field });
}

/**
 * The request's parameters are wrong, several at once maybe: one 400 names every problem, so a
 * client fixes them in one go.
 */
export function requestInvalid(fields: Record<string, string[]>): SluiceError {
  const summary = Object.entries(fields)
    .map(([field, problems]) => `${field}: ${problems.join(', ')}`)
    .join('; ');
  return new SluiceError('SLUICE_ERR_SHAPE_INVALID', summary, { fields });
}

/**
 * A subset snapshot's fields are wrong (docs/protocol.md §3.10): one 400 lists them under
 * `errors.subset`, by field (`where`, `params`, `limit`, `offset`, `order_by`), as Electric does,
 * beside the problems of the request's other parameters (`others`).
 */
export function subsetInvalid(
  fields: Record<string, string[]>,
  others: Record<string, string[]> = {},
): SluiceError {
  const summary = [
    ...Object.entries(others).map(([field, problems]) => `${field}: ${problems.join(', ')}`),
    ...Object.entries(fields).map(([field, problems]) => `subset ${field}: ${problems.join(', ')}`),
  ].join('; ');
  return new SluiceError('SLUICE_ERR_SHAPE_INVALID', summary, {
    fields: { ...others, subset: fields },
  });
}

/** Held requests end at once when the server closes; the client retries elsewhere or later. */
export function shuttingDown(): SluiceError {
  return new SluiceError('SLUICE_ERR_SHUTTING_DOWN', 'The server is shutting down');
}
