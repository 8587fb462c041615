/**
 * `SessionKv`: Deno KV's API over one session's storage.
 *
 * @module
 */
import { AtomicOperation } from "./atomic.ts";
import { COMMIT_VERSIONSTAMP, encodeKey, type KvKey } from "./codec/key_codec.ts";
import type { KvAccess } from "./engine.ts";
import { DEFAULT_BATCH_CAP, MAX_GET_MANY_KEYS } from "./limits.ts";
import { checkReadKey, encodeReadKey, encodeReadKeys, entryOf, KvListIterator } from "./list.ts";
import { type KvEnqueueOptions, runQueueListener } from "./queue.ts";
import { type KvWatchOptions, watchKeys } from "./watch.ts";
import type {
  KvCommitResult,
  KvEntryMaybe,
  KvGetOptions,
  KvListOptions,
  KvListSelector,
  KvSetOptions,
} from "./types.ts";

function badResource(): Error {
  return new Deno.errors.BadResource("Bad resource ID");
}

/** Encodes the keys of point reads; a get reads `[key, key + 0x00)`. */
function readKeys(keys: readonly unknown[], consistency: unknown): Uint8Array[] {
  // Deno KV's order: key parts, consistency, the number of keys, bigint
  // ranges, key sizes.
  const encoded = encodeReadKeys(keys as (readonly unknown[])[], consistency, () => {
    if (keys.length > MAX_GET_MANY_KEYS) {
      throw new TypeError(`Too many ranges (max ${MAX_GET_MANY_KEYS})`);
    }
  }) as Uint8Array[];
  for (const bytes of encoded) checkReadKey(bytes, 1);
  return encoded;
}

function positiveInteger(value: unknown): boolean {
  return typeof value === "number" && Number.isInteger(value) && value > 0;
}

/**
 * One session's key-value store, with the methods and behaviour of `Deno.Kv`
 * (same keys, ordering, values, versionstamps, selectors, cursors, limits and
 * errors). Obtain one from `SessionStore.openKv()`; close it when done
 * (`using kv = ...`). A view holds no file: the store opens and closes the
 * session's database underneath it.
 *
 * @example Reading and writing
 * ```ts
 * import { SessionStore } from "@sessionkv/core";
 * import { deepEqual } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * await using store = new SessionStore({ root });
 * using kv = await store.openKv("support-bot", "user-42");
 * await kv.set(["messages", 1], { role: "user", text: "hi" });
 * const entry = await kv.get(["messages", 1]);
 * deepEqual(entry.value, { role: "user", text: "hi" });
 * await store.close();
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class SessionKv implements Disposable {
  #access: KvAccess;
  #closed = false;
  /** Stops every watch stream and queue listener of this view. */
  #stops = new Set<() => void>();
  /** The store's access without the closed guard, for listeners finishing deliveries. */
  #inner: KvAccess;
  /** Queue listeners still finishing; the view is released when the last ends. */
  #listeners = 0;

  /** @internal Use `SessionStore.openKv()`. */
  constructor(access: KvAccess) {
    this.#inner = access;
    // Every operation, including those of atomic operations and list
    // iterators made from this view, goes through this guard.
    this.#access = {
      run: (op) => this.#closed ? Promise.reject(badResource()) : access.run(op),
      maxValueBytes: access.maxValueBytes,
      release: () => access.release(),
      committed: (plan) => access.committed(plan),
      subscribe: (subscriber) => access.subscribe(subscriber),
    };
  }

  /**
   * Reads one key.
   *
   * @param key The key.
   * @param options `consistency` (both levels read the latest state).
   * @returns The entry; `value` and `versionstamp` are `null` when absent.
   * @throws {TypeError} On an invalid key or option.
   */
  async get<T = unknown>(key: KvKey, options?: KvGetOptions): Promise<KvEntryMaybe<T>> {
    const bytes = encodeReadKey(key, options?.consistency);
    const now = Date.now();
    const row = await this.#access.run((engine) => engine.get(bytes, now));
    return row === undefined ? { key, value: null, versionstamp: null } : entryOf<T>(row);
  }

  /**
   * Reads up to 10 keys in one snapshot.
   *
   * @param keys The keys.
   * @param options `consistency`.
   * @returns One entry per key, in order.
   * @throws {TypeError} On more than 10 keys or an invalid key.
   */
  async getMany<T extends readonly unknown[]>(
    keys: readonly [...{ [K in keyof T]: KvKey }],
    options?: KvGetOptions,
  ): Promise<{ [K in keyof T]: KvEntryMaybe<T[K]> }> {
    if (!Array.isArray(keys)) encodeKey(keys);
    const encoded = readKeys(keys, options?.consistency);
    if (encoded.length === 0) return [] as unknown as { [K in keyof T]: KvEntryMaybe<T[K]> };
    const now = Date.now();
    const rows = await this.#access.run((engine) => engine.getMany(encoded, now));
    return rows.map((row, i) =>
      row === undefined ? { key: keys[i], value: null, versionstamp: null } : entryOf(row)
    ) as unknown as { [K in keyof T]: KvEntryMaybe<T[K]> };
  }

  /**
   * Writes one key.
   *
   * @param key The key; its last part may be `commitVersionstamp()`.
   * @param value Any structured-cloneable value.
   * @param options `expireIn` in milliseconds: the key disappears for every
   *   read at that moment and is removed from disk later.
   * @returns The commit's versionstamp.
   * @throws {TypeError} On an invalid key, value, option or limit.
   */
  async set(key: KvKey, value: unknown, options?: KvSetOptions): Promise<KvCommitResult> {
    const result = await new AtomicOperation(this.#access).set(key, value, options).commit();
    return result as KvCommitResult;
  }

  /**
   * Deletes one key. Deleting a missing key is still a commit.
   *
   * @param key The key.
   * @throws {TypeError} On an invalid or empty key.
   */
  async delete(key: KvKey): Promise<void> {
    await new AtomicOperation(this.#access).delete(key).commit();
  }

  /**
   * Lists the entries a selector picks, in key order.
   *
   * @param selector `{ prefix }`, `{ prefix, start }`, `{ prefix, end }` or `{ start, end }`.
   * @param options `limit`, `cursor`, `reverse`, `consistency`, `batchSize`.
   * @returns An async iterator with a `cursor` getter.
   * @throws {TypeError} On a malformed selector.
   * @throws {Error} On a `limit` or `batchSize` that is not a positive integer.
   */
  list<T = unknown>(selector: KvListSelector, options: KvListOptions = {}): KvListIterator<T> {
    const { limit, batchSize } = options;
    if (limit !== undefined && !positiveInteger(limit)) {
      throw new Error(`Limit must be a positive integer: received ${String(limit)}`);
    }
    if (batchSize !== undefined && !positiveInteger(batchSize)) {
      throw new Error(`batchSize must be a positive integer: received ${String(batchSize)}`);
    }
    let size = batchSize ?? limit ?? 100;
    if (batchSize === undefined && size > DEFAULT_BATCH_CAP) size = DEFAULT_BATCH_CAP;
    return new KvListIterator<T>({
      selector,
      limit,
      cursor: options.cursor,
      reverse: options.reverse === true, // as Deno KV: only `true` reverses
      consistency: options.consistency,
      batchSize: size,
      explicitBatchSize: batchSize !== undefined,
      access: this.#access,
    });
  }

  /**
   * Adds a message to the session's queue. Messages are stored in the
   * session's file, so they survive restarts, and are delivered at least once
   * to a `listenQueue` handler in any process.
   *
   * @param value Any structured-cloneable value.
   * @param options `delay` (ms, up to 30 days), `keysIfUndelivered`,
   *   `backoffSchedule` (retry delays in ms, at most 5).
   * @returns The commit's versionstamp.
   * @throws {TypeError} On a bad option, value or limit.
   */
  async enqueue(value: unknown, options?: KvEnqueueOptions): Promise<KvCommitResult> {
    const result = await new AtomicOperation(this.#access).enqueue(value, options).commit();
    return result as KvCommitResult;
  }

  /**
   * Delivers the session's queued messages to `handler` until the view is
   * closed. A message whose handler throws is retried per its
   * `backoffSchedule`, then written to its `keysIfUndelivered`.
   *
   * @param handler Called with each message's value.
   * @returns A promise that resolves after `close()`.
   * @throws {Error} "Queue already closed" when the view is closed.
   */
  async listenQueue(handler: (value: unknown) => Promise<void> | void): Promise<void> {
    if (this.#closed) throw new Error("Queue already closed");
    const controller = new AbortController();
    const stop = () => controller.abort();
    this.#stops.add(stop);
    const unsubscribe = this.#access.subscribe({ committed() {}, closed: stop });
    this.#listeners++;
    try {
      // In-flight deliveries are acknowledged after close(): the view is
      // released only once the listener has finished.
      await runQueueListener(this.#inner, handler, controller.signal);
    } catch (error) {
      if (!controller.signal.aborted) throw error;
    } finally {
      unsubscribe();
      this.#stops.delete(stop);
      if (--this.#listeners === 0 && this.#closed) this.#inner.release();
    }
  }

  /**
   * Streams the entries of up to 10 keys: first their current state, then
   * again whenever one of them changes (through any view, in this process or
   * another) or expires.
   *
   * @param keys The keys.
   * @param options `raw: true` also emits when a commit touched a key without
   *   changing it.
   * @returns A stream of entry arrays, in key order. Cancel it to stop.
   * @throws {TypeError} On more than 10 keys or an invalid key.
   */
  watch<T extends readonly unknown[]>(
    keys: readonly [...{ [K in keyof T]: KvKey }],
    options?: KvWatchOptions,
  ): ReadableStream<{ [K in keyof T]: KvEntryMaybe<T[K]> }> {
    return watchKeys<T>(this.#access, keys, options, (stop) => {
      if (this.#closed) throw badResource();
      this.#stops.add(stop);
      return () => this.#stops.delete(stop);
    });
  }

  /**
   * Starts an atomic operation.
   *
   * @returns A new, empty operation.
   */
  atomic(): AtomicOperation {
    return new AtomicOperation(this.#access);
  }

  /**
   * The symbol that, as the last part of a key given to `set`, is replaced
   * by the commit's versionstamp.
   *
   * @returns The same symbol every time.
   */
  commitVersionstamp(): symbol {
    return COMMIT_VERSIONSTAMP;
  }

  /**
   * Releases this view. Operations on it then reject with `BadResource`.
   *
   * @throws {Deno.errors.BadResource} When already closed.
   */
  close(): void {
    if (this.#closed) throw badResource();
    this.#closed = true;
    for (const stop of [...this.#stops]) stop();
    if (this.#listeners === 0) this.#access.release();
  }

  /** Releases this view; does nothing when already closed. */
  [Symbol.dispose](): void {
    if (!this.#closed) this.close();
  }
}
