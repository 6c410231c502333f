import { shapeInvalid } from '../errors/sluice-error.js';
import { topSubqueries, type FilterNode } from './filter-spec.js';

/** A condition of a disjunct: a clause part that is neither AND, OR nor NOT, maybe negated. */
export interface Literal {
  node: FilterNode;
  negated: boolean;
}

/** More positions than this make every message's tags too long: such clauses are refused. */
export const MAX_POSITIONS = 64;

/**
 * The clause as an OR of ANDs of literals (NOT pushed down to them by De Morgan's laws, which
 * hold in SQL's three-valued logic, as does distributing AND over OR). Subquery shapes tag each
 * row with one tag per disjunct, one slot per literal (docs/protocol.md §13.2). A
 * subquery must be a literal itself: under anything but AND, OR and NOT it is refused.
 */
export function disjunctiveForm(root: FilterNode): Literal[][] {
  const disjuncts = expand(root, false);
  const positions = disjuncts.reduce((sum, conjunction) => sum + conjunction.length, 0);
  if (positions > MAX_POSITIONS) {
    throw shapeInvalid(
      'where',
      `a clause with subqueries expands to ${positions} conditions in disjunctive normal form; at most ${MAX_POSITIONS} are allowed`,
    );
  }
  return disjuncts;
}

function expand(node: FilterNode, negated: boolean): Literal[][] {
  if (node.op === 'not') return expand(node.arg, !negated);
  if (node.op === 'and' || node.op === 'or') {
    const parts = node.args.map((arg) => expand(arg, negated));
    // NOT (a AND b) is NOT a OR NOT b: an AND under an odd number of NOTs is an OR.
    const union = (node.op === 'or') !== negated;
    if (union) return parts.flat();
    return parts.reduce<Literal[][]>(
      (product, part) => {
        const next = product.flatMap((left) => part.map((right) => [...left, ...right]));
        if (next.length > MAX_POSITIONS) {
          throw shapeInvalid(
            'where',
            `a clause with subqueries expands to more than ${MAX_POSITIONS} disjuncts in disjunctive normal form`,
          );
        }
        return next;
      },
      [[]],
    );
  }
  if (node.op !== 'subquery' && topSubqueries(node).length > 0) {
    throw shapeInvalid(
      'where',
      'a subquery may only be combined with AND, OR and NOT (not inside IS, CASE or other expressions)',
    );
  }
  return [[{ node, negated }]];
}
