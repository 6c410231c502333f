/** A method's calls counted while a test looks (`countCalls`); the method still runs. */
export interface CallCount {
  readonly count: number;
  /** Puts the method back as it was. */
  restore(): void;
}

/**
 * Counts the calls of `object[name]` (a prototype's method counts every instance's calls) until
 * `restore()`.
 */
export function countCalls(object: object, name: string): CallCount {
  const methods = object as Record<string, (...args: unknown[]) => unknown>;
  const original = methods[name];
  if (typeof original !== 'function') throw new Error(`${name} is not a method`);
  const counted = { count: 0, restore: () => void (methods[name] = original) };
  methods[name] = function (this: unknown, ...args: unknown[]) {
    counted.count++;
    return original.apply(this, args);
  };
  return counted;
}
