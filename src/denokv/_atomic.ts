/**
 * Deno KV atomic operations within Deno KV's limits: mutations counted and
 * sized as Deno KV counts them (spec §6), split into batches, and redo logs
 * for commits too large for one atomic operation.
 *
 * @module
 */
import { encodeKey } from "../codec/key_codec.ts";
import { deserializeV8, serializeV8 } from "../codec/value_codec.ts";

/** A Deno KV mutation. */
export interface DenoOp {
  /** `set` or `delete`. */
  type: "set" | "delete";
  /** The Deno KV key. */
  key: Deno.KvKey;
  /** The value of a `set`. */
  value?: unknown;
  /** Deno KV expiry of a `set`, ms. */
  expireIn?: number;
}

/** A Deno KV check. */
export interface DenoCheck {
  /** The key. */
  key: Deno.KvKey;
  /** Its expected versionstamp, `null` for absent. */
  versionstamp: string | null;
}

/**
 * The limits of one atomic operation. Deno KV allows 1000 mutations, 100
 * checks (a self-hosted denokv server: 10), 819200 bytes in all and 81920
 * bytes of keys of value-carrying mutations; a little is held back.
 */
export const LIMITS = {
  mutations: 1000,
  checks: 10,
  totalBytes: 819200 - 4096,
  keyBytes: 81920 - 1024,
} as const;

const sizes = new WeakMap<object, { key: number; value: number }>();

function sizeOf(op: DenoOp): { key: number; value: number } {
  let s = sizes.get(op);
  if (s === undefined) {
    const value = op.type === "delete"
      ? 0
      : op.value instanceof Uint8Array
      ? op.value.byteLength
      : serializeV8(op.value).length;
    s = { key: encodeKey(op.key).length, value };
    sizes.set(op, s);
  }
  return s;
}

/** Running totals of one atomic operation. */
export class Budget {
  #mutations = 0;
  #checks = 0;
  #total = 0;
  #keys = 0;

  /** Adds checks; `false` (and nothing added) when they do not fit. */
  addChecks(checks: readonly DenoCheck[]): boolean {
    let bytes = 0;
    for (const c of checks) bytes += encodeKey(c.key).length;
    if (this.#checks + checks.length > LIMITS.checks) return false;
    if (this.#total + bytes > LIMITS.totalBytes) return false;
    this.#checks += checks.length;
    this.#total += bytes;
    return true;
  }

  /** Adds a mutation; `false` (and nothing added) when it does not fit. */
  add(op: DenoOp): boolean {
    const s = sizeOf(op);
    const total = op.type === "set" ? 2 * s.key + s.value : s.key;
    const keys = op.type === "set" ? s.key : 0;
    if (
      this.#mutations + 1 > LIMITS.mutations || this.#total + total > LIMITS.totalBytes ||
      this.#keys + keys > LIMITS.keyBytes
    ) {
      return false;
    }
    this.#mutations++;
    this.#total += total;
    this.#keys += keys;
    return true;
  }

  /** Adds every mutation; `false` when they do not all fit. */
  addAll(ops: readonly DenoOp[]): boolean {
    for (const op of ops) if (!this.add(op)) return false;
    return true;
  }
}

/** Whether checks and mutations fit one atomic operation. */
export function fits(checks: readonly DenoCheck[], ops: readonly DenoOp[]): boolean {
  const budget = new Budget();
  return budget.addChecks(checks) && budget.addAll(ops);
}

/**
 * Whether an error is a local Deno KV file's SQLite lock held by another
 * process for longer than Deno KV retries it (it then throws "database is
 * locked"); such a write can simply be tried again.
 */
export function isLocked(error: unknown): boolean {
  return error instanceof Error &&
    /database is locked|database table is locked/.test(error.message);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** How long a write waits for another process's lock on a local Deno KV file. */
const LOCKED_TIMEOUT_MS = 30_000;

/**
 * Runs a Deno KV call, again while another process holds a local Deno KV
 * file's lock.
 */
export async function retryLocked<T>(call: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCKED_TIMEOUT_MS;
  for (let delay = 2;; delay = Math.min(delay * 2, 50)) {
    try {
      return await call();
    } catch (error) {
      if (!isLocked(error) || Date.now() > deadline) throw error;
    }
    await sleep(delay * (0.5 + Math.random()));
  }
}

/** Commits checks and mutations as one atomic operation. */
export function commitAtomic(
  kv: Deno.Kv,
  checks: readonly DenoCheck[],
  ops: readonly DenoOp[],
): Promise<Deno.KvCommitResult | Deno.KvCommitError> {
  return retryLocked(() => {
    const atomic = kv.atomic();
    for (const c of checks) atomic.check(c);
    for (const op of ops) {
      if (op.type === "delete") {
        atomic.delete(op.key);
      } else {
        atomic.set(
          op.key,
          op.value,
          op.expireIn === undefined ? undefined : { expireIn: op.expireIn },
        );
      }
    }
    return atomic.commit();
  });
}

/** Splits mutations into batches that each fit one atomic operation with `checks`. */
export function batches(checks: readonly DenoCheck[], ops: readonly DenoOp[]): DenoOp[][] {
  const out: DenoOp[][] = [];
  let current: DenoOp[] = [];
  let budget = new Budget();
  budget.addChecks(checks);
  for (const op of ops) {
    if (!budget.add(op)) {
      if (current.length === 0) {
        throw new TypeError("A single Deno KV mutation exceeds Deno KV's limits");
      }
      out.push(current);
      current = [];
      budget = new Budget();
      budget.addChecks(checks);
      if (!budget.add(op)) {
        throw new TypeError("A single Deno KV mutation exceeds Deno KV's limits");
      }
    }
    current.push(op);
  }
  if (current.length > 0) out.push(current);
  return out;
}

/**
 * Commits mutations in as many atomic operations as needed, each with
 * `checks`.
 *
 * @returns The last versionstamp, or `null` when a check failed (the batches
 *   before it stay written).
 */
export async function commitBatches(
  kv: Deno.Kv,
  checks: readonly DenoCheck[],
  ops: readonly DenoOp[],
): Promise<string | null> {
  let stamp: string | null = null;
  for (const batch of batches(checks, ops)) {
    const result = await commitAtomic(kv, checks, batch);
    if (!result.ok) return null;
    stamp = result.versionstamp;
  }
  return stamp;
}

/** Bytes of one redo log record. */
const LOG_CHUNK_BYTES = 65000;

/** Serialises mutations into redo log records. */
export function encodeLog(ops: readonly DenoOp[]): Uint8Array[] {
  const bytes = serializeV8(
    ops.map((op) => op.type === "delete" ? [0, op.key] : [1, op.key, op.value, op.expireIn ?? -1]),
  );
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += LOG_CHUNK_BYTES) {
    out.push(bytes.slice(i, i + LOG_CHUNK_BYTES));
  }
  return out;
}

/** Reads the mutations back from redo log records. */
export function decodeLog(records: readonly Uint8Array[]): DenoOp[] {
  let length = 0;
  for (const r of records) length += r.length;
  const bytes = new Uint8Array(length);
  let pos = 0;
  for (const r of records) {
    bytes.set(r, pos);
    pos += r.length;
  }
  const raw = deserializeV8(bytes) as [number, Deno.KvKey, unknown?, number?][];
  return raw.map(([type, key, value, expireIn]) =>
    type === 0
      ? { type: "delete", key }
      : expireIn === undefined || expireIn < 0
      ? { type: "set", key, value }
      : { type: "set", key, value, expireIn }
  );
}
