/**
 * The `filter` option of `list()`: a checkpoint matches when its metadata
 * contains every filter entry, compared as PostgreSQL's `jsonb @>` compares
 * (objects by contained keys, arrays by contained elements, the rest by
 * value).
 *
 * @module
 */

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Whether `actual` contains `expected`. */
export function contains(actual: unknown, expected: unknown): boolean {
  if (Array.isArray(expected)) {
    return Array.isArray(actual) &&
      expected.every((item) => actual.some((candidate) => contains(candidate, item)));
  }
  if (isPlainObject(expected)) {
    return isPlainObject(actual) &&
      Object.entries(expected).every(([key, value]) =>
        Object.hasOwn(actual, key) && contains(actual[key], value)
      );
  }
  return Object.is(actual, expected) || actual === expected;
}

/** Whether `metadata` matches every entry of `filter`. */
export function matchesFilter(
  metadata: unknown,
  filter: Record<string, unknown> | undefined,
): boolean {
  if (filter === undefined) return true;
  const record = isPlainObject(metadata) ? metadata : {};
  return Object.entries(filter).every(([key, value]) =>
    Object.hasOwn(record, key) ? contains(record[key], value) : value === undefined
  );
}
