import type { ErrorCode } from '@sluice/protocol';

/** What the request parameters at fault, or a wait before retrying, add to a coded error. */
export interface SluiceErrorDetails {
  /** The request parameter at fault: a 400 lists the message under it (`errors`). */
  field?: string;
  /** Several parameters at fault at once, each with its problems: a 400 lists them all. */
  fields?: Record<string, string[]>;
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

/** Held requests end at once when the server closes; the client retries elsewhere or later. */
export function shuttingDown(): SluiceError {
  return new SluiceError('SLUICE_ERR_SHUTTING_DOWN', 'The server is shutting down');
}
