/**
 * Error classes that callers are expected to catch. Bad arguments throw the
 * built-in `TypeError` / `RangeError`, as Deno KV does; these classes cover
 * conditions of the store itself.
 *
 * @module
 */

/** Options accepted by every sessionkv error class. */
export interface SessionKvErrorOptions {
  /** The underlying error, kept for diagnosis. */
  cause?: unknown;
}

/**
 * Thrown by every method of a {@linkcode SessionStore} after `close()` began.
 *
 * @example Catching use after close
 * ```ts
 * import { SessionStore, SessionStoreClosedError } from "@sessionkv/core";
 * import { rejects } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * const store = new SessionStore({ root });
 * await store.close();
 * await rejects(store.openKv("bot", "s1"), SessionStoreClosedError);
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class SessionStoreClosedError extends Error {
  /**
   * Makes the error.
   *
   * @param message What was attempted.
   * @param options The cause, if any.
   */
  constructor(message = "Session store is closed", options?: SessionKvErrorOptions) {
    super(message, options);
    this.name = "SessionStoreClosedError";
  }
}

/**
 * Thrown by `SessionStore.acquire()` (and `withSession()`) when no turn was
 * granted within `timeoutMs`.
 *
 * @example A second turn on a busy session times out
 * ```ts
 * import { LeaseTimeoutError, SessionStore } from "@sessionkv/core";
 * import { rejects } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * const store = new SessionStore({ root });
 * const turn = await store.acquire("bot", "s1");
 * await rejects(store.acquire("bot", "s1", { timeoutMs: 50 }), LeaseTimeoutError);
 * await turn.release();
 * await store.close();
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class LeaseTimeoutError extends Error {
  /**
   * Makes the error.
   *
   * @param message Which session timed out and after how long.
   * @param options The cause, if any.
   */
  constructor(message: string, options?: SessionKvErrorOptions) {
    super(message, options);
    this.name = "LeaseTimeoutError";
  }
}

/**
 * Thrown when another process kept a session's write lock for longer than the
 * store's `busyTimeoutMs`. The `cause` is the {@linkcode SqliteError} with code
 * `SQLITE_BUSY` (5). Nothing was written; the operation may be retried.
 *
 * @example Retrying an operation that met a busy session
 * ```ts
 * import { SessionBusyError, SqliteError } from "@sessionkv/core";
 * import { equal } from "node:assert/strict";
 *
 * async function retryBusy<T>(op: () => Promise<T>, attempts = 3): Promise<T> {
 *   for (let attempt = 1;; attempt++) {
 *     try {
 *       return await op();
 *     } catch (error) {
 *       if (!(error instanceof SessionBusyError) || attempt >= attempts) throw error;
 *     }
 *   }
 * }
 *
 * let calls = 0;
 * const result = await retryBusy(() => {
 *   calls++;
 *   if (calls === 1) {
 *     const cause = new SqliteError("database is locked", 5);
 *     return Promise.reject(new SessionBusyError("Session busy", { cause }));
 *   }
 *   return Promise.resolve("done");
 * });
 * equal(result, "done");
 * equal(calls, 2);
 * ```
 */
export class SessionBusyError extends Error {
  /**
   * Makes the error.
   *
   * @param message Which session was busy and for how long.
   * @param options The cause, if any.
   */
  constructor(message: string, options?: SessionKvErrorOptions) {
    super(message, options);
    this.name = "SessionBusyError";
  }
}

/**
 * Thrown when a session's database file is damaged (not a database, malformed,
 * or not a regular file). The file is left untouched for inspection; other
 * sessions are not affected. `deleteSession()` removes it, so the session can
 * start afresh.
 *
 * @example A damaged session fails alone, and deleting it recovers
 * ```ts
 * import { SessionCorruptedError, SessionStore } from "@sessionkv/core";
 * import { equal, rejects } from "node:assert/strict";
 * import { join } from "node:path";
 *
 * const root = await Deno.makeTempDir();
 * let store = new SessionStore({ root });
 * for (const id of ["good", "bad"]) {
 *   using kv = await store.openKv("bot", id);
 *   await kv.set(["k"], id);
 * }
 * const [bad] = await Array.fromAsync(store.sessions({ botId: "bot" }))
 *   .then((all) => all.filter((s) => s.sessionId === "bad"));
 * await store.close();
 * await Deno.writeTextFile(join(bad!.path, "kv.sqlite3"), "not a database ".repeat(100));
 *
 * store = new SessionStore({ root });
 * await rejects(store.openKv("bot", "bad"), SessionCorruptedError);
 * {
 *   using good = await store.openKv("bot", "good");
 *   equal((await good.get(["k"])).value, "good");
 * }
 * equal(await store.deleteSession("bot", "bad"), true);
 * const fresh = await store.openKv("bot", "bad");
 * equal((await fresh.get(["k"])).value, null);
 * fresh.close();
 * await store.close();
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class SessionCorruptedError extends Error {
  /** The path of the damaged session directory or file. */
  readonly path: string;
  /**
   * Makes the error.
   *
   * @param message What is wrong.
   * @param path The damaged path.
   * @param options The cause, if any.
   */
  constructor(message: string, path: string, options?: SessionKvErrorOptions) {
    super(message, options);
    this.name = "SessionCorruptedError";
    this.path = path;
  }
}
