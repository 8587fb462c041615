/**
 * The storage seam under `SessionKv`: what a backend must do for one session.
 * The KV semantics (validation, limits, codecs, cursors, versionstamp format,
 * numeric mutations) live above it and are written once; a backend only reads
 * ranges of encoded keys and applies a validated commit plan in one
 * transaction. Methods may answer synchronously (SQLite) or with a promise
 * (a network database).
 *
 * @module
 */
import type { EncodedValue } from "./codec/value_codec.ts";

/**
 * A stored entry: encoded key, encoded value, value encoding, commit version
 * and, where the engine reports it, the expiry time in epoch ms.
 */
export type KvRow = readonly [
  key: Uint8Array,
  value: Uint8Array,
  encoding: number,
  version: number,
  expiresAt?: number | null,
];

/** A read of encoded keys in `[start, end)`. */
export interface ReadRange {
  /** Inclusive lower bound. */
  start: Uint8Array;
  /** Exclusive upper bound. */
  end: Uint8Array;
  /** Most rows to return. */
  limit: number;
  /** Walk from `end` down to `start`. */
  reverse: boolean;
}

/** A check: the key's current version must equal `version` (`null`: must not exist). */
export interface PlannedCheck {
  /** Encoded key. */
  key: Uint8Array;
  /** Expected commit version, `null` for absent, `-1` for a stamp that matches nothing. */
  version: number | null;
}

/** A mutation whose key and value are already encoded and validated. */
export type PlannedMutation =
  | {
    type: "set";
    key: Uint8Array;
    /** Append the commit's versionstamp to `key` as a string part. */
    versionstampKey: boolean;
    value: EncodedValue;
    /** Milliseconds from the commit time to expiry, or `null` for none. */
    expireIn: number | null;
  }
  | { type: "delete"; key: Uint8Array }
  | { type: "sum" | "min" | "max"; key: Uint8Array; value: EncodedValue };

/** A message to add to the session's queue. */
export interface PlannedEnqueue {
  /** The structured-clone payload. */
  payload: Uint8Array;
  /** Milliseconds from the commit until delivery. */
  delayMs: number;
  /** Retry delays left, in ms. */
  backoffSchedule: number[];
  /** Encoded keys that get the message if every delivery fails. */
  keysIfUndelivered: Uint8Array[];
}

/** A validated atomic operation. */
export interface CommitPlan {
  /** Checks, evaluated against the state before any mutation. */
  checks: PlannedCheck[];
  /** Mutations, applied in order. */
  mutations: PlannedMutation[];
  /** Messages to enqueue. */
  enqueues: PlannedEnqueue[];
  /** A claimed queue message to remove in the same transaction. */
  dequeued?: number;
}

/** A queue message claimed by a listener until `deadline`. */
export interface QueuedMessage {
  /** The message id within the session. */
  id: number;
  /** The structured-clone payload. */
  payload: Uint8Array;
  /** Retry delays left, in ms. */
  backoffSchedule: number[];
  /** Encoded keys that get the message if every delivery fails. */
  keysIfUndelivered: Uint8Array[];
}

/** What a value may be: the value or a promise of it. */
export type MaybePromise<T> = T | Promise<T>;

/** One session's storage. `now` is the caller's clock in epoch ms. */
export interface KvEngine {
  /** The live row for `key`, ignoring expired rows. */
  get(key: Uint8Array, now: number): MaybePromise<KvRow | undefined>;
  /** The live rows for `keys`, in order, read in one snapshot. */
  getMany(keys: Uint8Array[], now: number): MaybePromise<(KvRow | undefined)[]>;
  /** Live rows in a range, ordered by key. */
  list(range: ReadRange, now: number): MaybePromise<KvRow[]>;
  /**
   * Applies a plan in one transaction: all checks pass and every mutation is
   * written with one new version, or nothing is written.
   *
   * @returns The new version, or `null` when a check failed.
   */
  commit(plan: CommitPlan, now: number): MaybePromise<number | null>;
  /**
   * Claims the next message ready at `now` until `now + leaseMs` (when it
   * becomes deliverable again, e.g. after a crash of its listener).
   */
  dequeue(now: number, leaseMs: number): MaybePromise<QueuedMessage | undefined>;
  /** When the next message becomes deliverable, or `undefined` for an empty queue. */
  nextDelivery(): MaybePromise<number | undefined>;
  /** Keeps a claimed message claimed until `deadline`. */
  extendMessage(id: number, deadline: number): MaybePromise<void>;
  /** Puts a claimed message back for another attempt at `readyAt`. */
  retryMessage(id: number, readyAt: number, backoffSchedule: number[]): MaybePromise<void>;
  /**
   * A value that changes when another process commits to the session; used
   * to notice foreign commits while watchers or listeners exist.
   */
  changeToken(): MaybePromise<string>;
}

/** What a view hears about commits to its session made in this process. */
export interface CommitSubscriber {
  /** A commit succeeded. */
  committed(plan: CommitPlan): void;
  /** The store is closing: stop. */
  closed(): void;
}

/**
 * How a `SessionKv` reaches its engine. The store implements it: it opens,
 * reopens and pins the session's storage around each call.
 */
export interface KvAccess {
  /** Runs `op` with the session's engine. */
  run<T>(op: (engine: KvEngine) => MaybePromise<T>): Promise<T>;
  /** The value size limit. */
  readonly maxValueBytes: number;
  /** Called once when the view is closed. */
  release(): void;
  /** Tells every subscriber of the session in this process about a commit. */
  committed(plan: CommitPlan): void;
  /** Hears this session's commits until the returned function is called. */
  subscribe(subscriber: CommitSubscriber): () => void;
}
