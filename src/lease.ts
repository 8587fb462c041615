/**
 * `SessionLease`: an exclusive turn on one session.
 *
 * @module
 */
import type { SessionKv } from "./session_kv.ts";

/**
 * An exclusive turn on a session, from `SessionStore.acquire()`. Turns are
 * granted first come, first served, and are exclusive across processes on the
 * same host. Release it with `release()` or `await using`.
 *
 * @example An exclusive turn
 * ```ts
 * import { SessionStore } from "@sessionkv/core";
 * import { equal } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * await using store = new SessionStore({ root });
 * {
 *   await using lease = await store.acquire("bot", "user-1", { timeoutMs: 1000 });
 *   await lease.kv.set(["state"], "thinking");
 * }
 * equal(store.stats().leasedSessions, 0);
 * await store.close();
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class SessionLease implements AsyncDisposable {
  readonly #kv: SessionKv;
  readonly #botId: string;
  readonly #sessionId: string;
  #release: (() => Promise<void>) | undefined;

  /** @internal Use `SessionStore.acquire()`. */
  constructor(kv: SessionKv, botId: string, sessionId: string, release: () => Promise<void>) {
    this.#kv = kv;
    this.#botId = botId;
    this.#sessionId = sessionId;
    this.#release = release;
  }

  /** The session's KV, for use during the turn. */
  get kv(): SessionKv {
    return this.#kv;
  }

  /** The bot id. */
  get botId(): string {
    return this.#botId;
  }

  /** The session id. */
  get sessionId(): string {
    return this.#sessionId;
  }

  /** Whether the turn is still held. */
  get held(): boolean {
    return this.#release !== undefined;
  }

  /** Ends the turn and hands it to the next waiter. Releasing twice does nothing. */
  async release(): Promise<void> {
    const release = this.#release;
    if (release === undefined) return;
    this.#release = undefined;
    await release();
  }

  /** Same as {@linkcode SessionLease.release}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}
