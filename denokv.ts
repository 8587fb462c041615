/**
 * The same `SessionStore` on Deno KV: every session inside one `Deno.Kv`,
 * for Deno Deploy (no file system, no FFI), or any `Deno.Kv` (a local file,
 * or a self-hosted denokv reached with `Deno.openKv(url)`).
 *
 * Each session is a key prefix in the KV, and `SessionKv` keeps this
 * module's semantics on it, including where they go beyond Deno KV: a
 * commit is all or nothing (also one larger than a single Deno KV atomic
 * operation allows), expired keys are hidden at once, values above 64 KiB
 * (with `maxValueBytes` raised) are split into chunks, and keys up to Deno
 * KV's full 2048 bytes work despite the prefix. A session index kept in the
 * same atomic commits lets `sessions()` and `cleanup()` work without
 * reading any session's keys; leases and "open here" pins are KV records
 * with deadlines, exclusive across instances.
 *
 * Needs `--unstable-kv` (or Deno Deploy) for `Deno.openKv`.
 *
 * @example A store on Deno KV
 * ```ts
 * import { SessionStore } from "@sessionkv/core";
 * import { denoKvBackend } from "@sessionkv/core/denokv";
 * import { equal } from "node:assert/strict";
 *
 * const kv = await Deno.openKv(":memory:");
 * const store = new SessionStore({ backend: denoKvBackend(kv) });
 * {
 *   using session = await store.openKv("support-bot", "user-42");
 *   await session.set(["messages", 1], { role: "user", text: "hi" });
 *   equal((await session.get<{ text: string }>(["messages", 1])).value?.text, "hi");
 * }
 * for await (const info of store.sessions()) equal(info.sessionId, "user-42");
 * await store.close();
 * kv.close(); // The store never closes your Deno.Kv.
 * ```
 *
 * On Deno Deploy, register the cleanup at the top level of the main module
 * (see `examples/deploy.ts`):
 *
 * ```ts ignore
 * const kv = await Deno.openKv();
 * const store = new SessionStore({ backend: denoKvBackend(kv) });
 * scheduleCleanup(store, { schedule: "0 * * * *", olderThanDays: 7 });
 * ```
 *
 * @module
 */
import { DenoKvBackend, type DenoKvBackendOptions } from "./src/denokv/backend.ts";

export { DenoKvBackend };
export type { DenoKvBackendOptions };
// The backend seam's types (also exported by `@sessionkv/core`), so this
// entry point documents what `DenoKvBackend` implements.
export type {
  BackendEngine,
  BackendHold,
  BackendSessionInfo,
  CleanupRun,
  CleanupTally,
  LeaseRequest,
  LocalSession,
  SessionBackend,
  SessionRef,
} from "./src/backend.ts";
export type {
  CommitPlan,
  KvEngine,
  KvRow,
  MaybePromise,
  PlannedCheck,
  PlannedEnqueue,
  PlannedMutation,
  QueuedMessage,
  ReadRange,
} from "./src/engine.ts";
export type { EncodedValue, ValueEncoding } from "./src/codec/value_codec.ts";
export { SessionCorruptedError } from "./src/errors.ts";

/**
 * Makes a backend that keeps a `SessionStore`'s sessions in a `Deno.Kv`.
 * Pass it as `backend` to `new SessionStore(...)`.
 *
 * Layout under `prefix` (default `["sessionkv"]`): a meta record per session
 * (`[...prefix, "idx", botId, sessionId]`: version, last activity, size),
 * an idle index ordered by last activity for cleanup, a control record with
 * pins and lease, and the session's keys under
 * `[...prefix, "u", uid, "d", <encoded key>]`, where `uid` is drawn when the
 * session is created (so deleting a session is one atomic operation, and
 * its keys are removed in batches afterwards).
 *
 * The store does not close `kv`: close it yourself after `store.close()`.
 * The backend needs no permission of its own (a file-backed `Deno.Kv` needs
 * `--allow-read`/`--allow-write` on its file, and `--unstable-kv` outside
 * Deno Deploy).
 *
 * @param kv Any `Deno.Kv`: `Deno.openKv()` on Deno Deploy, a file path, or
 *   a denokv URL.
 * @param options `prefix`, `leaseTtlMs`, `pinTtlMs`, `retryTimeoutMs`.
 * @returns The backend.
 * @throws {TypeError} When `kv` is not a `Deno.Kv` or the prefix holds an
 *   invalid key part.
 * @throws {RangeError} When a time is not positive or the prefix is longer
 *   than 512 encoded bytes.
 *
 * @example Two stores sharing one Deno KV under different prefixes
 * ```ts
 * import { SessionStore } from "@sessionkv/core";
 * import { denoKvBackend } from "@sessionkv/core/denokv";
 * import { equal } from "node:assert/strict";
 *
 * const kv = await Deno.openKv(":memory:");
 * const a = new SessionStore({ backend: denoKvBackend(kv, { prefix: ["app", "a"] }) });
 * const b = new SessionStore({
 *   backend: denoKvBackend(kv, { prefix: ["app", "b"], leaseTtlMs: 5000 }),
 * });
 * await a.withSession("bot", "s1", (session) => session.set(["turn"], 1));
 * equal((await b.withSession("bot", "s1", (session) => session.get(["turn"]))).value, null);
 * await a.close();
 * await b.close();
 * kv.close();
 * ```
 */
export function denoKvBackend(kv: Deno.Kv, options: DenoKvBackendOptions = {}): DenoKvBackend {
  return new DenoKvBackend(kv, options);
}
