/**
 * Versionstamps: 20 lowercase hex digits, the 8-byte big-endian commit
 * version followed by `0000`, as Deno KV writes them. Pure functions.
 *
 * @module
 */

const PAD = "0000000000000000";

/**
 * Formats a commit version as a versionstamp.
 *
 * @param version A non-negative safe integer.
 * @returns 20 lowercase hex digits.
 */
export function formatVersionstamp(version: number): string {
  const hex = version.toString(16);
  return PAD.slice(hex.length) + hex + "0000";
}

const STAMP = /^[0-9a-fA-F]{20}$/;

/**
 * Parses a versionstamp given to `check()`.
 *
 * @param stamp The caller's versionstamp (case-insensitive).
 * @returns The commit version, or `-1` for a well-formed stamp that no commit
 *   of this store can have produced (it then matches nothing).
 * @throws {TypeError} "Invalid check" when `stamp` is not 20 hex digits.
 */
export function parseVersionstamp(stamp: string): number {
  if (!STAMP.test(stamp)) throw new TypeError("Invalid check");
  const lower = stamp.toLowerCase();
  if (!lower.endsWith("0000")) return -1;
  const version = parseInt(lower.slice(0, 16), 16);
  return Number.isSafeInteger(version) ? version : -1;
}

/**
 * A random step in [1, 9] between consecutive commit versions, as Deno KV
 * does, so callers cannot come to rely on consecutive numbers.
 */
export function versionStep(): number {
  return 1 + Math.floor(Math.random() * 9);
}
