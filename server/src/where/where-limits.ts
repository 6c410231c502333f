import { CONFIG_OPTIONS } from '../config/config-options.js';

/**
 * How large a where clause may be (docs/security.md, "Where clauses"). A clause is compiled and
 * then evaluated on every snapshot row and every change of its table, so its size is its cost:
 * `t || t || …` 650 levels deep kept Postgres busy for half a minute on a small table, and
 * thousands of levels overflowed the call stack of the recursive walks that compile it.
 */
export interface WhereLimits {
  /** Characters (UTF-16 code units) of the clause text (`SLUICE_WHERE_MAX_LENGTH`). */
  maxLength: number;
  /** Syntax nodes of its parse tree: operators, names, constants, calls… (`SLUICE_WHERE_MAX_NODES`). */
  maxNodes: number;
  /** Nesting of those nodes, the clause's root being level 1 (`SLUICE_WHERE_MAX_DEPTH`). */
  maxDepth: number;
}

/** The limits an unconfigured server applies: the options' documented defaults (all set). */
export const DEFAULT_WHERE_LIMITS: Readonly<WhereLimits> = Object.freeze({
  maxLength: CONFIG_OPTIONS.whereMaxLength.default!,
  maxNodes: CONFIG_OPTIONS.whereMaxNodes.default!,
  maxDepth: CONFIG_OPTIONS.whereMaxDepth.default!,
});

/** How many syntax nodes a parse tree holds and how deeply they nest. */
export interface SyntaxTreeSize {
  nodes: number;
  depth: number;
}

/**
 * Measures a libpg_query parse tree without recursion (a loop over an explicit stack), so that
 * a tree of any depth is measured before anything recursive walks it. A syntax node is an
 * object with a single key naming its kind (`{ "A_Expr": { … } }`); the objects and lists
 * inside a node's body are its fields, not nodes of their own.
 */
export function measureSyntaxTree(root: unknown): SyntaxTreeSize {
  const size: SyntaxTreeSize = { nodes: 0, depth: 0 };
  const pending: { value: unknown; depth: number }[] = [{ value: root, depth: 0 }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { value, depth } = next;
    if (Array.isArray(value)) {
      for (const item of value as unknown[]) pending.push({ value: item, depth });
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    const keys = Object.keys(value);
    const isNode = keys.length === 1 && /^[A-Z]/.test(keys[0]!);
    const inner = isNode ? depth + 1 : depth;
    if (isNode) {
      size.nodes++;
      size.depth = Math.max(size.depth, inner);
    }
    for (const field of Object.values(value)) pending.push({ value: field, depth: inner });
  }
  return size;
}
