/**
 * `AtomicOperation`: checks and mutations committed together, validated as
 * Deno KV validates them (builder errors synchronously, limits at commit).
 *
 * @module
 */
import {
  COMMIT_VERSIONSTAMP,
  encodeKey,
  endsWithVersionstamp,
  type KvKey,
  serdeTypeName,
} from "./codec/key_codec.ts";
import { type EncodedValue, encodeValue, ENCODING_LE64, serializeV8 } from "./codec/value_codec.ts";
import { validateSumOperand } from "./codec/numeric.ts";
import { formatVersionstamp, parseVersionstamp } from "./codec/versionstamp.ts";
import type {
  CommitPlan,
  KvAccess,
  PlannedCheck,
  PlannedEnqueue,
  PlannedMutation,
} from "./engine.ts";
import {
  enqueueBackoff,
  enqueueDelay,
  type KvEnqueueOptions,
  validateEnqueueOptions,
} from "./queue.ts";
import { KvU64, u64Of } from "./kv_u64.ts";
import {
  MAX_CHECKS,
  MAX_ENQUEUE_BYTES,
  MAX_MUTATIONS,
  MAX_TOTAL_KEY_BYTES,
  MAX_WRITE_KEY_BYTES,
  maxTotalMutationBytes,
} from "./limits.ts";
import type {
  AtomicCheck,
  KvCommitError,
  KvCommitResult,
  KvMutation,
  KvSetOptions,
} from "./types.ts";

type NumericType = "sum" | "min" | "max";

interface RawMutation {
  type: "set" | "delete" | NumericType;
  key: unknown;
  value?: EncodedValue;
  expireIn?: number | undefined;
  /** The caller's value, for `Deno.inspect`. */
  shown?: unknown;
}

/** The latest time a JavaScript Date can hold: expiry times must be dates. */
const MAX_DATE_MS = 8.64e15;

const BIGINT_WRITE = "Invalid mutation: BigUint requires more than 255 bytes to be represented";

interface RawEnqueue {
  payload: Uint8Array;
  delay: unknown;
  keysIfUndelivered: readonly unknown[];
  backoffSchedule: unknown;
  options: KvEnqueueOptions | undefined;
  shown: unknown;
}

/** Bytes a versionstamp adds to a key: a string part of 20 hex digits. */
const VERSIONSTAMP_PART_BYTES = 22;

/**
 * Validates `expireIn` as Deno KV does.
 *
 * @throws {TypeError} When it is not a non-negative integer.
 */
export function validateExpireIn(expireIn: unknown): number | undefined {
  if (expireIn === undefined) return undefined;
  if (typeof expireIn !== "number" || !Number.isInteger(expireIn) || expireIn < 0) {
    throw new TypeError(`expireIn must be a non-negative integer: received ${String(expireIn)}`);
  }
  return expireIn;
}

function operand(value: unknown): EncodedValue {
  // A KvU64 (ours or Deno's) is stored as LE64; anything else goes through
  // structured clone and is judged at commit.
  const u = u64Of(value);
  return u === undefined ? encodeValue(value) : encodeValue(new KvU64(u));
}

/**
 * A set of checks and mutations committed all or nothing. Obtain one from
 * `SessionKv.atomic()`; builder methods return `this`.
 *
 * Unlike Deno KV, a commit whose mutation fails (for example `sum` on a
 * string) writes nothing: the versionstamp does not move.
 *
 * @example Compare-and-set
 * ```ts
 * import { SessionStore } from "@sessionkv/core";
 * import { equal } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * await using store = new SessionStore({ root });
 * using kv = await store.openKv("bot", "s1");
 * const entry = await kv.get(["turn"]);
 * const result = await kv.atomic()
 *   .check(entry)
 *   .set(["turn"], 1)
 *   .commit();
 * equal(result.ok, true);
 * await store.close();
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class AtomicOperation {
  #access: KvAccess;
  #checks: { key: unknown; versionstamp: unknown }[] = [];
  #mutations: RawMutation[] = [];
  #enqueues: RawEnqueue[] = [];

  /** @internal Use `SessionKv.atomic()`. */
  constructor(access: KvAccess) {
    this.#access = access;
  }

  /**
   * Adds checks: each key's versionstamp must equal the given one (`null`:
   * the key must not exist) when the commit runs.
   *
   * @param checks Keys with expected versionstamps; entries from `get()` work.
   * @returns This operation.
   */
  check(...checks: AtomicCheck[]): this {
    for (const c of checks) {
      this.#checks.push({ key: c.key, versionstamp: c.versionstamp });
    }
    return this;
  }

  /**
   * Adds mutations given as objects.
   *
   * @param mutations `set`, `delete`, `sum`, `min` or `max` mutations.
   * @returns This operation.
   * @throws {TypeError} On an unknown type, a missing or stray value, a bad
   *   `expireIn` or a value that cannot be cloned.
   */
  mutate(...mutations: KvMutation[]): this {
    for (const m of mutations) {
      const type = m.type as string;
      switch (type) {
        case "set": {
          if (!("value" in m)) throw new TypeError("Invalid mutation 'set' without value");
          // Like Deno KV, mutate() validates expireIn only when it is a
          // number; any other type is ignored (no expiry).
          const given = (m as { expireIn?: unknown }).expireIn;
          const expireIn = typeof given === "number" ? validateExpireIn(given) : undefined;
          this.#mutations.push({
            type: "set",
            key: m.key,
            value: encodeValue(m.value),
            expireIn,
            shown: m.value,
          });
          break;
        }
        case "delete":
          if ((m as { value?: unknown }).value) {
            throw new TypeError("Invalid mutation 'delete' with value");
          }
          this.#mutations.push({ type: "delete", key: m.key });
          break;
        case "sum":
        case "min":
        case "max": {
          if (!("value" in m)) throw new TypeError(`Invalid mutation '${type}' without value`);
          const value = (m as { value: unknown }).value;
          this.#mutations.push({ type, key: m.key, value: operand(value), shown: value });
          break;
        }
        default:
          throw new TypeError("Invalid mutation type");
      }
    }
    return this;
  }

  /**
   * Sets `key` to `value`.
   *
   * @param key The key; its last part may be `commitVersionstamp()`.
   * @param value Any structured-cloneable value.
   * @param options `expireIn` in milliseconds.
   * @returns This operation.
   * @throws {TypeError} On a bad `expireIn` or a value that cannot be cloned.
   */
  set(key: KvKey, value: unknown, options?: KvSetOptions): this {
    const expireIn = validateExpireIn(options?.expireIn);
    this.#mutations.push({ type: "set", key, value: encodeValue(value), expireIn, shown: value });
    return this;
  }

  /**
   * Deletes `key`.
   *
   * @param key The key.
   * @returns This operation.
   */
  delete(key: KvKey): this {
    this.#mutations.push({ type: "delete", key });
    return this;
  }

  /**
   * Adds `n` to the `KvU64` at `key` (wrapping at 2^64), or sets it to `n`.
   *
   * @param key The key.
   * @param n A bigint from 0 to 2^64-1.
   * @returns This operation.
   * @throws {TypeError} When `n` is not a bigint.
   * @throws {RangeError} When `n` is out of range.
   */
  sum(key: KvKey, n: bigint): this {
    return this.#numeric("sum", key, n);
  }

  /**
   * Sets the `KvU64` at `key` to the smaller of it and `n`, or to `n`.
   *
   * @param key The key.
   * @param n A bigint from 0 to 2^64-1.
   * @returns This operation.
   * @throws {TypeError} When `n` is not a bigint.
   * @throws {RangeError} When `n` is out of range.
   */
  min(key: KvKey, n: bigint): this {
    return this.#numeric("min", key, n);
  }

  /**
   * Sets the `KvU64` at `key` to the larger of it and `n`, or to `n`.
   *
   * @param key The key.
   * @param n A bigint from 0 to 2^64-1.
   * @returns This operation.
   * @throws {TypeError} When `n` is not a bigint.
   * @throws {RangeError} When `n` is out of range.
   */
  max(key: KvKey, n: bigint): this {
    return this.#numeric("max", key, n);
  }

  /**
   * Adds a message to the session's queue when the operation commits.
   *
   * @param value Any structured-cloneable value.
   * @param options `delay`, `keysIfUndelivered`, `backoffSchedule`.
   * @returns This operation.
   * @throws {TypeError} On a bad option or a value that cannot be cloned.
   */
  enqueue(value: unknown, options?: KvEnqueueOptions): this {
    validateEnqueueOptions(options);
    this.#enqueues.push({
      payload: serializeV8(value),
      delay: options?.delay,
      keysIfUndelivered: options?.keysIfUndelivered ?? [],
      backoffSchedule: options?.backoffSchedule,
      options,
      shown: value,
    });
    return this;
  }

  #numeric(type: NumericType, key: KvKey, n: bigint): this {
    const value = new KvU64(n);
    this.#mutations.push({ type, key, value: encodeValue(value), shown: value });
    return this;
  }

  /**
   * Commits: if every check passes, applies every mutation under one new
   * versionstamp; otherwise writes nothing.
   *
   * @returns `{ ok: true, versionstamp }`, or `{ ok: false }` when a check failed.
   * @throws {TypeError} On invalid keys, versionstamps or limits (Deno KV's messages).
   */
  async commit(): Promise<KvCommitResult | KvCommitError> {
    const plan = planCommit(
      this.#checks,
      this.#mutations,
      this.#enqueues,
      this.#access.maxValueBytes,
    );
    const now = Date.now();
    const version = await this.#access.run((engine) => engine.commit(plan, now));
    if (version === null) return { ok: false };
    this.#access.committed(plan);
    return { ok: true, versionstamp: formatVersionstamp(version) };
  }

  /**
   * Always throws: an atomic operation is not a promise.
   *
   * @throws {TypeError} Always; call `commit()`.
   */
  then(): never {
    throw new TypeError(
      "'Deno.AtomicOperation' is not a promise: did you forget to call 'commit()'",
    );
  }

  /** Lists the operation as `Deno.inspect` shows a `Deno.AtomicOperation`. */
  [Symbol.for("Deno.customInspect")](
    inspect: (value: unknown, options?: unknown) => string,
    options: unknown,
  ): string {
    const show = (v: unknown) => inspect(v, options);
    const lines = [
      ...this.#checks.map((c) =>
        `check(${show({ key: c.key, versionstamp: c.versionstamp ?? null })})`
      ),
      ...this.#mutations.map((m) => {
        const args = [show(m.key)];
        if (m.type !== "delete") args.push(show(m.shown));
        if (m.expireIn !== undefined) args.push(show({ expireIn: m.expireIn }));
        return `${m.type}(${args.join(", ")})`;
      }),
      ...this.#enqueues.map((e) =>
        `enqueue(${show(e.shown)}${e.options === undefined ? "" : `, ${show(e.options)}`})`
      ),
    ];
    return lines.length === 0
      ? "AtomicOperation (empty)"
      : `AtomicOperation\n${lines.map((l) => "  " + l).join("\n")}`;
  }
}

function keyTooLarge(size: number): void {
  if (size > MAX_WRITE_KEY_BYTES) {
    throw new TypeError(`Key too large for write (max ${MAX_WRITE_KEY_BYTES} bytes)`);
  }
}

/**
 * Validates an atomic operation in Deno KV's order and encodes it.
 *
 * @throws {TypeError} The first validation error, with Deno KV's message.
 */
function planCommit(
  rawChecks: { key: unknown; versionstamp: unknown }[],
  rawMutations: RawMutation[],
  rawEnqueues: RawEnqueue[],
  maxValueBytes: number,
): CommitPlan {
  // 1. Shapes: keys and versionstamp types.
  const checkKeys = rawChecks.map((c) => {
    // Deno KV decodes a check's key with its versionstamp: a bigint part that
    // is too large reads as a malformed check.
    const key = encodeKey(c.key, { bigintTooLarge: "Invalid check" });
    const stamp = c.versionstamp;
    if (stamp !== null && stamp !== undefined && typeof stamp !== "string") {
      throw new TypeError(
        `serde_v8 error: invalid type; expected: string, got: ${serdeTypeName(stamp)}`,
      );
    }
    return key;
  });
  // A bigint part out of range is found while decoding mutations (step 3),
  // after the checks' format: keep it for then.
  let outOfRange: unknown;
  const mutationKeys = rawMutations.map((m) => {
    try {
      return encodeKey(m.key, {
        allowVersionstamp: m.type === "set",
        bigintTooLarge: BIGINT_WRITE,
      });
    } catch (error) {
      if (!(error instanceof TypeError) || error.message !== BIGINT_WRITE) throw error;
      outOfRange ??= error;
      return new Uint8Array(0);
    }
  });
  // Deno KV's order for each enqueue: delay, keysIfUndelivered, backoffSchedule.
  const enqueueShapes = rawEnqueues.map((e) => {
    const delayMs = enqueueDelay(e.delay);
    if (!Array.isArray(e.keysIfUndelivered)) encodeKey(e.keysIfUndelivered);
    const keys = e.keysIfUndelivered.map((k) => encodeKey(k));
    return { delayMs, keys, backoffSchedule: enqueueBackoff(e.backoffSchedule) };
  });
  // 2. Counts.
  if (rawChecks.length > MAX_CHECKS) throw new TypeError(`Too many checks (max ${MAX_CHECKS})`);
  if (rawMutations.length + rawEnqueues.length > MAX_MUTATIONS) {
    throw new TypeError(`Too many mutations (max ${MAX_MUTATIONS})`);
  }
  // 3. Versionstamp format and mutation operands.
  const checks: PlannedCheck[] = rawChecks.map((c, i) => ({
    key: checkKeys[i]!,
    version: typeof c.versionstamp === "string" ? parseVersionstamp(c.versionstamp) : null,
  }));
  if (outOfRange !== undefined) throw outOfRange;
  const now = Date.now();
  for (const m of rawMutations) {
    if (m.expireIn !== undefined && now + m.expireIn > MAX_DATE_MS) {
      const shown = m.expireIn >= 2 ** 64 ? "18446744073709551615" : String(m.expireIn);
      throw new TypeError(`Invalid mutation: expireIn is too large: ${shown}`);
    }
  }
  for (const m of rawMutations) {
    if (m.type === "sum") validateSumOperand(m.value!);
  }
  // 4. Key emptiness and size: checks, then mutations.
  for (const key of checkKeys) {
    if (key.length === 0) throw new TypeError("key cannot be empty");
    keyTooLarge(key.length);
  }
  const mutations: PlannedMutation[] = rawMutations.map((m, i) => {
    const key = mutationKeys[i]!;
    const versionstampKey = m.type === "set" && endsWithVersionstamp(m.key as unknown[]);
    if (key.length === 0) throw new TypeError("key cannot be empty");
    keyTooLarge(key.length + (versionstampKey ? VERSIONSTAMP_PART_BYTES : 0));
    if (m.type === "delete") return { type: "delete", key };
    if (m.type === "set") {
      return { type: "set", key, versionstampKey, value: m.value!, expireIn: m.expireIn ?? null };
    }
    return { type: m.type, key, value: m.value! };
  });
  // 5. Value sizes.
  let valueBytes = 0;
  let writeKeyBytes = 0;
  for (const m of mutations) {
    if (m.type === "delete") continue;
    const size = m.value.encoding === ENCODING_LE64 ? 8 : m.value.bytes.length;
    if (size > maxValueBytes) {
      throw new TypeError(`Value too large (max ${maxValueBytes} bytes)`);
    }
    valueBytes += size;
    writeKeyBytes += m.key.length + (m.type === "set" && m.versionstampKey ? 22 : 0);
  }
  const enqueues: PlannedEnqueue[] = rawEnqueues.map((e, i) => {
    if (e.payload.length > MAX_ENQUEUE_BYTES) {
      throw new TypeError(`enqueue payload too large (max ${MAX_ENQUEUE_BYTES} bytes)`);
    }
    const shape = enqueueShapes[i]!;
    valueBytes += e.payload.length + 4 * shape.backoffSchedule.length;
    return {
      payload: e.payload,
      delayMs: shape.delayMs,
      backoffSchedule: shape.backoffSchedule,
      keysIfUndelivered: shape.keys,
    };
  });
  // 6. Totals.
  let total = valueBytes + writeKeyBytes;
  for (const c of checks) total += c.key.length;
  for (const m of mutations) total += m.key.length;
  const maxTotal = maxTotalMutationBytes(maxValueBytes);
  if (total > maxTotal) {
    throw new TypeError(`Total mutation size too large (max ${maxTotal} bytes)`);
  }
  if (writeKeyBytes > MAX_TOTAL_KEY_BYTES) {
    throw new TypeError(`Total key size too large (max ${MAX_TOTAL_KEY_BYTES} bytes)`);
  }
  return { checks, mutations, enqueues };
}

export { COMMIT_VERSIONSTAMP };
