/**
 * `SessionKv`: Deno KV's API over one session's storage.
 *
 * @module
 */
import { AtomicOperation } from "./atomic.ts";
import { COMMIT_VERSIONSTAMP, encodeKey, type KvKey } from "./codec/key_codec.ts";
import type { KvAccess } from "./engine.ts";
import { DEFAULT_BATCH_CAP, MAX_GET_MANY_KEYS } from "./limits.ts";
import { checkReadKey, entryOf, KvListIterator, validateConsistency } from "./list.ts";
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

/** Encodes a key for a point read; a get reads `[key, key + 0x00)`. */
function readKey(key: unknown): Uint8Array {
  const bytes = encodeKey(key);
  checkReadKey(new Uint8Array(bytes.length + 1));
  return bytes;
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

  /** @internal Use `SessionStore.openKv()`. */
  constructor(access: KvAccess) {
    // Every operation, including those of atomic operations and list
    // iterators made from this view, goes through this guard.
    this.#access = {
      run: (op) => this.#closed ? Promise.reject(badResource()) : access.run(op),
      maxValueBytes: access.maxValueBytes,
      release: () => access.release(),
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
    const bytes = readKey(key);
    validateConsistency(options?.consistency);
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
    if (keys.length > MAX_GET_MANY_KEYS) {
      throw new TypeError(`Too many ranges (max ${MAX_GET_MANY_KEYS})`);
    }
    const encoded = keys.map(readKey);
    validateConsistency(options?.consistency);
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
      reverse: options.reverse ?? false,
      consistency: options.consistency,
      batchSize: size,
      explicitBatchSize: batchSize !== undefined,
      access: this.#access,
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
    this.#access.release();
  }

  /** Releases this view; does nothing when already closed. */
  [Symbol.dispose](): void {
    if (!this.#closed) this.close();
  }
}
