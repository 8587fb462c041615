/**
 * Commits many mutations within Deno KV's per-commit limits: the ones that
 * must become visible together go in the last commit, everything else in
 * as few commits before it as fit.
 *
 * @module
 */
import type { AtomicCheck, KvKey, SessionKv } from "../../mod.ts";

/** Budget of one commit in key plus value bytes (Deno KV allows 819200). */
export const COMMIT_BYTES = 800_000;
/** Mutations per commit (Deno KV allows 1000). */
export const COMMIT_MUTATIONS = 1000;

/** A `set` with an upper bound of its key plus serialised value bytes. */
export interface SetMutation {
  key: KvKey;
  value: unknown;
  /** Upper bound of the encoded key and value bytes. */
  size: number;
}

/** Upper bound of a string's UTF-8 bytes. */
export function stringBytes(s: string): number {
  return s.length * 3;
}

/** Upper bound of a key's encoded bytes (string and number parts only). */
export function keyBytes(key: KvKey): number {
  let n = 0;
  for (const part of key) n += typeof part === "string" ? stringBytes(part) + 2 : 10;
  return n;
}

/** Whether mutations of `bytes` total bytes and `count` entries fit one commit. */
export function fits(bytes: number, count: number): boolean {
  return bytes <= COMMIT_BYTES && count <= COMMIT_MUTATIONS;
}

async function commit(kv: SessionKv, sets: SetMutation[], checks: AtomicCheck[]): Promise<boolean> {
  const op = kv.atomic();
  for (const c of checks) op.check(c);
  for (const m of sets) op.set(m.key, m.value);
  return (await op.commit()).ok;
}

/**
 * Writes `early` in as few commits as fit, then `last` (with `checks`) in one
 * final commit; the tail of `early` joins the final commit when it fits. A
 * reader sees everything in `last` at once, and only after all of `early`.
 *
 * @returns `false` when a check of the final commit failed (nothing of
 *   `last` was written then).
 * @throws {RangeError} When `last` alone does not fit one commit.
 */
export async function commitInOrder(
  kv: SessionKv,
  early: readonly SetMutation[],
  last: readonly SetMutation[],
  checks: AtomicCheck[] = [],
): Promise<boolean> {
  let lastBytes = 0;
  for (const m of last) lastBytes += m.size;
  for (const c of checks) lastBytes += keyBytes(c.key);
  const lastCount = last.length + checks.length;
  if (!fits(lastBytes, lastCount)) {
    throw new RangeError(`Too much data for one commit: ${lastBytes} bytes in ${lastCount} parts`);
  }
  let batch: SetMutation[] = [];
  let batchBytes = 0;
  for (const m of early) {
    if (!fits(batchBytes + m.size, batch.length + 1)) {
      await commit(kv, batch, []);
      batch = [];
      batchBytes = 0;
    }
    batch.push(m);
    batchBytes += m.size;
  }
  if (batch.length > 0 && !fits(batchBytes + lastBytes, batch.length + lastCount)) {
    await commit(kv, batch, []);
    batch = [];
  }
  if (batch.length + last.length + checks.length === 0) return true;
  return await commit(kv, [...batch, ...last], checks);
}
