import { SluiceError } from '../errors/sluice-error.js';
import { quoteTableIdentifier } from '../pg/table-identifier.js';
import type { ShapeDefinition } from './shape-definition.js';

/** How many shapes a server holds and creates at once (docs/security.md, "Shapes"). */
export interface ShapeLimits {
  /** Shapes held at most, in all (`SLUICE_MAX_SHAPES`) and per table (`..._PER_TABLE`). */
  maxShapes: number;
  maxShapesPerTable: number;
  /**
   * Shapes being created at once, whatever the request (`SLUICE_MAX_CONCURRENT_INITIAL`): one
   * more is refused rather than queued; joining a creation under way costs nothing.
   */
  maxConcurrentCreations: number;
}

/** What the registry holds when a new shape is asked for. */
export interface HeldShapes {
  /** Definitions of the shapes registered, those being created included. */
  registered: ShapeDefinition[];
  /** Definitions being created and not registered yet (still planning). */
  unregistered: ShapeDefinition[];
  /** Creations under way, registered or not. */
  creating: number;
}

/**
 * Throws the 503 that refuses creating one more shape for `definition`: too many creations at
 * once (`SLUICE_ERR_OVERLOADED`), or a shape limit reached (`SLUICE_ERR_SHAPE_LIMIT`, waiting
 * `retryAfterS`: the limit frees only as idle shapes are removed).
 */
export function admitCreation(
  definition: ShapeDefinition,
  held: HeldShapes,
  limits: ShapeLimits,
  retryAfterS: number,
): void {
  const { maxShapes, maxShapesPerTable, maxConcurrentCreations } = limits;
  if (held.creating >= maxConcurrentCreations) {
    const message = `Too many shapes being created at once (limit ${maxConcurrentCreations}); retry shortly`;
    throw new SluiceError('SLUICE_ERR_OVERLOADED', message);
  }
  const idleNote = 'shapes nobody reads are removed after SLUICE_SHAPE_IDLE_TIMEOUT_S';
  if (held.registered.length + held.unregistered.length >= maxShapes) {
    const message = `The server holds its limit of ${maxShapes} shapes (SLUICE_MAX_SHAPES); ${idleNote}`;
    throw new SluiceError('SLUICE_ERR_SHAPE_LIMIT', message, { retryAfterS });
  }
  const { schema, name } = definition.table;
  let count = 0;
  for (const other of [...held.registered, ...held.unregistered]) {
    if (other.table.schema === schema && other.table.name === name) count++;
  }
  if (count >= maxShapesPerTable) {
    const table = quoteTableIdentifier(definition.table);
    const message = `The server holds its limit of ${maxShapesPerTable} shapes of table ${table} (SLUICE_MAX_SHAPES_PER_TABLE); ${idleNote}`;
    throw new SluiceError('SLUICE_ERR_SHAPE_LIMIT', message, { retryAfterS });
  }
}
