/** A request names something that cannot become a shape; `field` is the parameter at fault. */
export class ShapeCreationError extends Error {
  override readonly name = 'ShapeCreationError';
  readonly code = 'SLUICE_ERR_SHAPE_INVALID';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}
