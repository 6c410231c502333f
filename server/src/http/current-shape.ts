import type { ShapeDefinition } from '../shapes/shape-definition.js';
import type { Shape } from '../shapes/shape.js';
import type { ShapeRegistry } from '../shapes/shape-registry.js';

/**
 * The shape a 409 sends a client to: the definition's current one, complete, made if need be.
 * A creation whose snapshot has failed is handed out by the registry until it has removed what it
 * made: its shape is deleted by then, and its error is not the 409's. It is waited out, and the
 * creation asked for then (a new one) gives the shape, or the error the 409 becomes.
 */
export async function currentShape(
  registry: ShapeRegistry,
  definition: ShapeDefinition,
): Promise<Shape> {
  const started = await registry.getOrStart(definition);
  if (started.deleted) await registry.created(started);
  return registry.getOrCreate(definition);
}
