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

/** Thrown by `SessionStore.acquire()` when no turn was granted within `timeoutMs`. */
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
 * `SQLITE_BUSY` (5).
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
 * sessions are not affected.
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
