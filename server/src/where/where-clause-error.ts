/**
 * A where clause or its params cannot make a shape; `field` is the request parameter at fault
 * (`where` or `params`) and the message is what the 400 says under it (PROTOCOL.md §2).
 */
export class WhereClauseError extends Error {
  override readonly name = 'WhereClauseError';
  readonly code = 'SLUICE_ERR_SHAPE_INVALID';
  constructor(
    readonly field: 'where' | 'params',
    message: string,
  ) {
    super(message);
  }
}
