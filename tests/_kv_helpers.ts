/**
 * Helpers shared by the same-source KV tests (`kv_*_test.ts`): exact error
 * assertions, list collection, versionstamp arithmetic and the key parts of
 * Deno KV's total order.
 */
import { AssertionError, ok } from "node:assert/strict";
import type { KvTarget } from "./_kv_targets.ts";

/** A constructor of `KvU64`-like values (`Deno.KvU64` or sessionkv's `KvU64`). */
export type U64Ctor = new (value: bigint) => Deno.KvU64;

/**
 * The `KvU64` class that belongs to a target: `Deno.KvU64` for the oracle,
 * sessionkv's own `KvU64` (from `mod.ts`, imported lazily) for the others.
 */
export async function u64Ctor(target: KvTarget): Promise<U64Ctor> {
  if (target.oracle) return Deno.KvU64;
  const mod = await import("../mod.ts");
  return mod.KvU64 as unknown as U64Ctor;
}

/** `true` for a `Deno.KvU64` or a sessionkv `KvU64` (both report that tag). */
export function isU64(value: unknown): value is Deno.KvU64 {
  return Object.prototype.toString.call(value) === "[object Deno.KvU64]";
}

/** The exact error text Deno KV gives for an invalid key part. */
export const BAD_PART = "expected string, number, bigint, ArrayBufferView, boolean";
/** Deno KV's write key limit error. */
export const WRITE_TOO_LARGE = "Key too large for write (max 2048 bytes)";
/** Deno KV's read key limit error. */
export const READ_TOO_LARGE = "Key too large for read (max 2049 bytes)";
/** Deno KV's value limit error. */
export const VALUE_TOO_LARGE = "Value too large (max 65536 bytes)";
/** The error of every operation on a closed `Deno.Kv`. */
export const BAD_RESOURCE = "Bad resource ID";
/** A versionstamp: 20 lowercase hex digits. */
export const STAMP_RE = /^[0-9a-f]{20}$/;

function checkError(
  error: unknown,
  className: string,
  message: string,
  where: string,
): void {
  const actual = error instanceof Error
    ? `${error.constructor.name} ${JSON.stringify(error.message)}`
    : `non-Error ${Deno.inspect(error)}`;
  if (
    !(error instanceof Error) || error.constructor.name !== className ||
    error.message !== message
  ) {
    throw new AssertionError({
      message: `${where}: expected ${className} ${JSON.stringify(message)}, got ${actual}`,
      actual,
      expected: `${className} ${JSON.stringify(message)}`,
      operator: "strictEqual",
    });
  }
}

/**
 * Asserts that `fn()` throws synchronously an error whose
 * `constructor.name` is `className` and whose message is exactly `message`.
 */
export function assertThrowsExact(
  fn: () => unknown,
  className: string,
  message: string,
): void {
  let result: unknown;
  try {
    result = fn();
  } catch (error) {
    checkError(error, className, message, "synchronous throw");
    return;
  }
  if (result instanceof Promise) result.catch(() => {});
  throw new AssertionError({
    message: `expected a synchronous ${className} "${message}", got ${
      result instanceof Promise ? "a promise" : Deno.inspect(result)
    }`,
  });
}

/**
 * Asserts that `fn()` returns a promise (it must not throw synchronously)
 * and that the promise rejects with `className` and exactly `message`.
 */
export async function assertRejectsExact(
  fn: () => PromiseLike<unknown>,
  className: string,
  message: string,
): Promise<void> {
  let promise: PromiseLike<unknown>;
  try {
    promise = fn();
  } catch (error) {
    throw new AssertionError({
      message: `expected a rejected promise, but the call threw synchronously: ${
        (error as Error)?.constructor?.name
      } ${(error as Error)?.message}`,
    });
  }
  try {
    const value = await promise;
    throw new AssertionError({
      message: `expected a rejection with ${className} "${message}", got ${Deno.inspect(value)}`,
    });
  } catch (error) {
    if (error instanceof AssertionError) throw error;
    checkError(error, className, message, "rejection");
  }
}

/** More entries than any test writes: a listing this long is running away. */
export const RUNAWAY_ENTRIES = 20_000;

/**
 * Drains a list iterator into an array of entries. Fails instead of hanging
 * when the iterator yields more than {@linkcode RUNAWAY_ENTRIES} entries.
 */
export async function collect<T = unknown>(
  iter: Deno.KvListIterator<T>,
): Promise<Deno.KvEntry<T>[]> {
  const out: Deno.KvEntry<T>[] = [];
  for await (const entry of iter) {
    out.push(entry);
    if (out.length > RUNAWAY_ENTRIES) {
      throw new AssertionError({
        message: `list() ran away: more than ${RUNAWAY_ENTRIES} entries, last ${
          Deno.inspect(entry.key)
        }`,
      });
    }
  }
  return out;
}

/** The keys `kv.list(selector, options)` yields, in order. */
export async function listKeys(
  kv: Deno.Kv,
  selector: Deno.KvListSelector,
  options?: Deno.KvListOptions,
): Promise<Deno.KvKey[]> {
  return (await collect(kv.list(selector, options))).map((e) => e.key);
}

/** One listing: every key with the cursor read right after it, and the final cursor. */
export interface Listing {
  steps: { key: Deno.KvKey; cursor: string }[];
  cursor: string;
}

/** Lists, recording the cursor after every entry and at the end. */
export async function listWithCursors(
  kv: Deno.Kv,
  selector: Deno.KvListSelector,
  options?: Deno.KvListOptions,
): Promise<Listing> {
  const iter = kv.list(selector, options);
  const steps: Listing["steps"] = [];
  for await (const entry of iter) {
    steps.push({ key: entry.key, cursor: iter.cursor });
    if (steps.length > RUNAWAY_ENTRIES) {
      throw new AssertionError({ message: "list() ran away" });
    }
  }
  return { steps, cursor: iter.cursor };
}

/** Writes every key with a value derived from its position. */
export async function setAll(kv: Deno.Kv, keys: Deno.KvKey[]): Promise<void> {
  for (const [i, key] of keys.entries()) await kv.set(key, i);
}

/** The commit version inside a versionstamp (its first 16 hex digits). */
export function versionOf(stamp: string): bigint {
  ok(STAMP_RE.test(stamp), `not a versionstamp: ${stamp}`);
  return BigInt(`0x${stamp.slice(0, 16)}`);
}

/** How far the commit version moved from stamp `a` to stamp `b`. */
export function versionGap(a: string, b: string): bigint {
  return versionOf(b) - versionOf(a);
}

/** The versionstamp of a successful write result (fails on `{ ok: false }`). */
export function stampOf(
  result: Deno.KvCommitResult | Deno.KvCommitError,
): string {
  ok(result.ok, "expected a successful commit");
  ok(STAMP_RE.test(result.versionstamp), `bad stamp ${result.versionstamp}`);
  return result.versionstamp;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A NaN whose sign bit is set (only reachable through typed arrays). Fine as
 * a value; unreliable as a key part (see {@linkcode orderedParts}).
 */
export const NEGATIVE_NAN: number = new Float64Array(
  new Uint8Array([0, 0, 0, 0, 0, 0, 0xf8, 0xff]).buffer,
)[0]!;

/** The largest bigint key part: a 255-byte magnitude. */
export const MAX_BIGINT_PART = 2n ** 2040n - 1n;

/**
 * Single key parts in Deno KV order (spec §7.3), smallest first:
 * Uint8Array < string (UTF-8 byte order) < bigint < number < boolean.
 *
 * A negative NaN (sorting before -Infinity) is left out: V8 does not promise
 * to keep a NaN's sign bit, and even Deno KV saw `[NEGATIVE_NAN]` turn into
 * `[NaN]` about once in 3000 writes. Deno KV also derives list cursors from
 * the decoded key, so after a negative-NaN key a batched listing skips
 * entries (forwards) or loops forever (in reverse).
 */
export function orderedParts(): Deno.KvKeyPart[] {
  return [
    new Uint8Array([]),
    new Uint8Array([0]),
    new Uint8Array([0, 0]),
    new Uint8Array([1]),
    new Uint8Array([255]),
    "",
    "\0",
    "a",
    "aa",
    "b",
    "é",
    "\uFFFF",
    "😀",
    -MAX_BIGINT_PART,
    -(2n ** 64n),
    -(2n ** 64n) + 1n,
    -256n,
    -255n,
    -1n,
    0n,
    1n,
    255n,
    256n,
    2n ** 64n - 1n,
    2n ** 64n,
    2n ** 70n,
    MAX_BIGINT_PART,
    -Infinity,
    -Number.MAX_VALUE,
    Number.MIN_SAFE_INTEGER,
    -1,
    -Number.MIN_VALUE,
    -0,
    0,
    Number.MIN_VALUE,
    1,
    3.14,
    Number.MAX_SAFE_INTEGER,
    Number.MAX_VALUE,
    Infinity,
    NaN,
    false,
    true,
  ];
}

/** Deterministic shuffle (for inserting keys out of order). */
export function shuffled<T>(items: readonly T[], seed = 1): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
