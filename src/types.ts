/**
 * The public KV types, shaped like their `Deno.*` namesakes so code written
 * for `Deno.Kv` type-checks against `SessionKv`.
 *
 * @module
 */
import type { KvKey } from "./codec/key_codec.ts";
import type { KvU64 } from "./kv_u64.ts";

export type { KvKey, KvKeyPart } from "./codec/key_codec.ts";

/** `"strong"` or `"eventual"`; both read the session's latest state. */
export type KvConsistencyLevel = "strong" | "eventual";

/** A stored entry. */
export interface KvEntry<T> {
  /** The key. */
  key: KvKey;
  /** The value. */
  value: T;
  /** The versionstamp of the commit that last wrote the key. */
  versionstamp: string;
}

/** An entry, or the key with `null` value and versionstamp when absent. */
export type KvEntryMaybe<T> = KvEntry<T> | {
  key: KvKey;
  value: null;
  versionstamp: null;
};

/** A successful commit. */
export interface KvCommitResult {
  /** Always `true`. */
  ok: true;
  /** The commit's versionstamp, shared by every key it wrote. */
  versionstamp: string;
}

/** A commit refused because a check failed. */
export interface KvCommitError {
  /** Always `false`. */
  ok: false;
}

/** A condition of an atomic operation: the key's versionstamp must equal this. */
export interface AtomicCheck {
  /** The key to check. */
  key: KvKey;
  /** The expected versionstamp; `null` means the key must not exist. */
  versionstamp: string | null;
}

/** A mutation for `AtomicOperation.mutate()`. */
export type KvMutation =
  & { key: KvKey }
  & (
    | { type: "set"; value: unknown; expireIn?: number }
    | { type: "delete" }
    | { type: "sum"; value: KvU64 }
    | { type: "max"; value: KvU64 }
    | { type: "min"; value: KvU64 }
  );

/** Which keys `list()` walks. */
export type KvListSelector =
  | { prefix: KvKey }
  | { prefix: KvKey; start: KvKey }
  | { prefix: KvKey; end: KvKey }
  | { start: KvKey; end: KvKey };

/** Options of `list()`. */
export interface KvListOptions {
  /** Most entries to return. @default {unlimited} */
  limit?: number;
  /** Resume after (or, reversed, before) this position. */
  cursor?: string;
  /** Walk in descending key order. @default {false} */
  reverse?: boolean;
  /** Read consistency. @default {"strong"} */
  consistency?: KvConsistencyLevel;
  /** Entries fetched per read; at most 1000. @default {min(limit, 500) or 100} */
  batchSize?: number;
}

/** Options of `set()` and `AtomicOperation.set()`. */
export interface KvSetOptions {
  /** Milliseconds until the key expires; a non-negative integer. */
  expireIn?: number;
}

/** Options of `get()` and `getMany()`. */
export interface KvGetOptions {
  /** Read consistency. @default {"strong"} */
  consistency?: KvConsistencyLevel;
}
