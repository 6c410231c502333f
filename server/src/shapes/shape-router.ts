import type { Row } from '../pg/transaction.js';
import { equalityTerm, type EqualityTerm } from '../where/equality-term.js';
import type { RowChange, Shape } from './shape.js';

/** Shapes of one table whose where clauses pin one column to constants, by constant. */
interface ColumnIndex {
  term: EqualityTerm;
  /** One shape alone where it is alone (the usual case): a Set per shape would cost ~100 bytes. */
  byKey: Map<string, Shape | Set<Shape>>;
}

interface RelationRoutes {
  /** Shapes every change must be shown to: no where clause, or one without an equality term. */
  scanned: Set<Shape>;
  /** By column and type signature. */
  indexes: Map<string, ColumnIndex>;
  /** How each indexed shape was indexed, to remove it again. */
  indexed: Map<Shape, { indexKey: string; keys: string[] }>;
}

/**
 * Finds the shapes a change may concern. A shape whose where clause is `col = c`, `col IN (…)`
 * or an AND holding one of those is found through an index from the row's value, so the cost
 * of a change does not grow with the number of such shapes; other shapes are all candidates.
 * Candidates still evaluate their whole clause (Shape.applyTransaction).
 */
export class ShapeRouter {
  readonly #relations = new Map<number, RelationRoutes>();

  add(shape: Shape): void {
    const oid = shape.metadata.relationOid;
    let routes = this.#relations.get(oid);
    if (!routes) {
      routes = { scanned: new Set(), indexes: new Map(), indexed: new Map() };
      this.#relations.set(oid, routes);
    }
    const filter = shape.metadata.filter;
    const term = filter ? equalityTerm(filter.root) : undefined;
    if (!term) {
      routes.scanned.add(shape);
      return;
    }
    const indexKey = `${term.column}\u0000${term.signature}`;
    let index = routes.indexes.get(indexKey);
    if (!index) routes.indexes.set(indexKey, (index = { term, byKey: new Map() }));
    for (const key of term.keys) {
      const found = index.byKey.get(key);
      if (found === undefined) index.byKey.set(key, shape);
      else if (found instanceof Set) found.add(shape);
      else if (found !== shape) index.byKey.set(key, new Set([found, shape]));
    }
    routes.indexed.set(shape, { indexKey, keys: term.keys });
  }

  remove(shape: Shape): void {
    const oid = shape.metadata.relationOid;
    const routes = this.#relations.get(oid);
    if (!routes) return;
    routes.scanned.delete(shape);
    const entry = routes.indexed.get(shape);
    const index = entry && routes.indexes.get(entry.indexKey);
    if (entry && index) {
      routes.indexed.delete(shape);
      for (const key of entry.keys) {
        const found = index.byKey.get(key);
        if (found === shape) index.byKey.delete(key);
        else if (found instanceof Set) {
          found.delete(shape);
          if (found.size === 1) index.byKey.set(key, found.values().next().value!);
        }
      }
      if (index.byKey.size === 0) routes.indexes.delete(entry.indexKey);
    }
    if (routes.scanned.size === 0 && routes.indexed.size === 0) this.#relations.delete(oid);
  }

  /** The shapes that may take part of this change. */
  candidates(change: RowChange): Iterable<Shape> {
    const routes = this.#relations.get(change.relation.oid);
    if (!routes) return [];
    if (routes.indexes.size === 0) return routes.scanned;
    const found = new Set(routes.scanned);
    const rows: Row[] = [];
    if (change.kind !== 'delete') rows.push(change.newRow);
    if (change.kind !== 'insert' && change.oldRow) rows.push(change.oldRow);
    for (const { term, byKey } of routes.indexes.values()) {
      for (const row of rows) {
        const key = term.keyOf(row);
        const shapes = key === undefined ? undefined : byKey.get(key);
        if (shapes instanceof Set) for (const shape of shapes) found.add(shape);
        else if (shapes) found.add(shapes);
      }
    }
    return found;
  }
}
