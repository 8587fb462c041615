/**
 * `KvU64`: an unsigned 64-bit integer value, as `Deno.KvU64`.
 *
 * @module
 */

const MAX_U64 = 0xffff_ffff_ffff_ffffn;

/**
 * An unsigned 64-bit integer stored as a KV value. Works like `Deno.KvU64`:
 * the target of `atomic().sum()`, `min()` and `max()`. Instances are frozen.
 *
 * @example Counting with sum
 * ```ts
 * import { KvU64, SessionStore } from "@sessionkv/core";
 * import { equal } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * await using store = new SessionStore({ root });
 * using kv = await store.openKv("bot", "s1");
 * await kv.atomic().sum(["visits"], 2n).sum(["visits"], 3n).commit();
 * const entry = await kv.get<KvU64>(["visits"]);
 * equal(entry.value?.value, 5n);
 * await store.close();
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class KvU64 {
  /** The integer, between 0 and 2^64-1. */
  readonly value: bigint;
  /**
   * Wraps a bigint.
   *
   * @param value A bigint from 0 to 2^64-1.
   * @throws {TypeError} When `value` is not a bigint.
   * @throws {RangeError} When `value` is negative or does not fit in 64 bits.
   */
  constructor(value: bigint) {
    if (typeof value !== "bigint") {
      throw new TypeError(`Value must be a bigint: received ${typeof value}`);
    }
    if (value < 0n) throw new RangeError(`Value must be a positive bigint: received ${value}`);
    if (value > MAX_U64) throw new RangeError("Value must fit in a 64-bit unsigned integer");
    this.value = value;
    Object.freeze(this);
  }
  /**
   * The integer, so `u + 1n` works.
   *
   * @returns The integer as a bigint.
   */
  valueOf(): bigint {
    return this.value;
  }
  /**
   * The integer in decimal.
   *
   * @returns The decimal string.
   */
  toString(): string {
    return String(this.value);
  }
  /** `"Deno.KvU64"`, as the real class reports. */
  get [Symbol.toStringTag](): string {
    return "Deno.KvU64";
  }
  /** Formats as `[Deno.KvU64: 5n]` in `Deno.inspect` and `console.log`. */
  [Symbol.for("Deno.customInspect")](): string {
    return `[Deno.KvU64: ${this.value}n]`;
  }
}

/**
 * Reads a `KvU64` or a real `Deno.KvU64` (present with `--unstable-kv`).
 *
 * @returns The bigint, or `undefined` when `value` is neither.
 */
export function u64Of(value: unknown): bigint | undefined {
  if (value instanceof KvU64) return value.value;
  // deno-lint-ignore no-explicit-any
  const DenoU64 = (globalThis as any).Deno?.KvU64;
  if (DenoU64 !== undefined && value instanceof DenoU64) return (value as { value: bigint }).value;
  return undefined;
}
