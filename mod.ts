/**
 * sessionkv: one SQLite file per conversation, with the Deno KV API on each.
 *
 * Agent platforms keep per-conversation state (checkpoints, chat history, tool
 * results). In one shared database, writers of thousands of conversations
 * queue on one lock. `SessionStore` gives each `(botId, sessionId)` its own
 * SQLite file in WAL mode instead, opened lazily and bounded in number, and
 * `SessionKv` puts Deno KV's API on it: same keys, ordering, values,
 * versionstamps, `list` selectors and cursors, `atomic()` and limits.
 *
 * @example Quick start
 * ```ts
 * import { SessionStore } from "@sessionkv/core";
 * import { deepEqual } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * await using store = new SessionStore({ root });
 *
 * using kv = await store.openKv("support-bot", "user-42");
 * await kv.set(["messages", 1], { role: "user", text: "hi" });
 * await kv.set(["messages", 2], { role: "assistant", text: "hello!" });
 *
 * const texts = [];
 * for await (const entry of kv.list<{ text: string }>({ prefix: ["messages"] })) {
 *   texts.push(entry.value.text);
 * }
 * deepEqual(texts, ["hi", "hello!"]);
 * await store.close();
 * await Deno.remove(root, { recursive: true });
 * ```
 *
 * @module
 */
export { SessionStore } from "./src/store.ts";
export type {
  AcquireOptions,
  CleanupOptions,
  CleanupProgress,
  CleanupReport,
  SessionInfo,
  SessionsOptions,
  SessionStoreOptions,
  StoreStats,
} from "./src/store.ts";
export { cleanupCronHandler, cleanupSettingsFromEnv, scheduleCleanup } from "./src/schedule.ts";
export type {
  CleanupCronHandler,
  CleanupEnvSettings,
  CleanupJobOptions,
  CleanupSchedule,
  ScheduleCleanupOptions,
} from "./src/schedule.ts";
export type { EnvLookup } from "./src/_env.ts";
export { SessionKv } from "./src/session_kv.ts";
export { AtomicOperation } from "./src/atomic.ts";
export { KvListIterator } from "./src/list.ts";
export { SessionLease } from "./src/lease.ts";
export { KvU64 } from "./src/kv_u64.ts";
export type { KvEnqueueOptions } from "./src/queue.ts";
export type { KvWatchOptions } from "./src/watch.ts";
export {
  LeaseTimeoutError,
  SessionBusyError,
  SessionCorruptedError,
  SessionStoreClosedError,
} from "./src/errors.ts";
export type { SessionKvErrorOptions } from "./src/errors.ts";
export { SqliteError } from "./src/sqlite/driver.ts";
export { nodeDriver } from "./src/sqlite/node_driver.ts";
export { checkSqliteVersion, loadFfiDriver } from "./src/sqlite/ffi_driver.ts";
export type { FfiSqliteDriver, LoadFfiDriverOptions } from "./src/sqlite/ffi_driver.ts";
export type {
  SqliteConnection,
  SqliteDriver,
  SqliteOpenOptions,
  SqliteRow,
  SqliteStatement,
  SqliteValue,
} from "./src/sqlite/driver.ts";
export type {
  AtomicCheck,
  KvCommitError,
  KvCommitResult,
  KvConsistencyLevel,
  KvEntry,
  KvEntryMaybe,
  KvGetOptions,
  KvKey,
  KvKeyPart,
  KvListOptions,
  KvListSelector,
  KvMutation,
  KvSetOptions,
} from "./src/types.ts";
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
