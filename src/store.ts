/**
 * `SessionStore`: one session per `(botId, sessionId)` (by default one
 * SQLite file under a root directory, or another backend), opened lazily, at
 * most `maxOpenSessions` at once, with exclusive turns (`acquire`) that also
 * hold across processes.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type {
  BackendEngine,
  BackendHold,
  LocalSession,
  SessionBackend,
  SessionRef,
} from "./backend.ts";
import type { CommitSubscriber, KvAccess, KvEngine, MaybePromise } from "./engine.ts";
import {
  LeaseTimeoutError,
  SessionBusyError,
  SessionCorruptedError,
  SessionStoreClosedError,
} from "./errors.ts";
import { SessionLease } from "./lease.ts";
import { DEFAULT_MAX_VALUE_BYTES } from "./limits.ts";
import { SessionKv } from "./session_kv.ts";
import { encodeId, validateId } from "./session_id.ts";
import type { SqliteDriver } from "./sqlite/driver.ts";
import { FilesBackend } from "./sqlite/files_backend.ts";
import { envChoice, type EnvLookup, processEnv, storeOptionsFromEnv } from "./_env.ts";
import { cleanupSettingsFromEnv, scheduleCleanup } from "./schedule.ts";

const logger = getLogger(["sessionkv", "store"]);

/** Options of {@linkcode SessionStore}. */
export interface SessionStoreOptions {
  /**
   * Directory that holds every session (`root/<bot>/<session>/kv.sqlite3`):
   * the default backend, one SQLite file per session. Give `root` or
   * `backend`.
   */
  root?: string;
  /**
   * Another place to keep sessions: `postgresBackend(...)` from
   * `@sessionkv/core/postgres`, `denoKvBackend(...)` from
   * `@sessionkv/core/denokv`, or any {@linkcode SessionBackend}. The SQLite
   * options (`wal`, `lockingMode`, `cacheSizeKiB`, `driver`, `sqliteLibPath`) do not apply
   * to it. The store closes it when it closes.
   */
  backend?: SessionBackend;
  /**
   * `journal_mode=WAL` with `synchronous=NORMAL`; `false` selects the rollback
   * journal with `synchronous=FULL`.
   * @default {true}
   */
  wal?: boolean;
  /**
   * SQLite's locking mode for each open session file.
   *
   * - `"normal"`: every transaction takes and releases the file's locks, so
   *   other processes (another server, `deno task cleanup`, a second store)
   *   can read and write the same session at any time.
   * - `"exclusive"`: this process keeps each session it has open locked
   *   until it closes the file (idle close, LRU eviction or `close()`). Reads
   *   skip the per-transaction lock calls (about 3× faster point reads) and
   *   WAL runs without the `-shm` file. Another process opening the same
   *   session meanwhile waits `busyTimeoutMs`, then fails with
   *   `SessionBusyError`. For one process per root, or sessions routed to
   *   one process each. Cleanup from other processes stays safe: it skips
   *   open sessions either way.
   * @default {"normal"}
   */
  lockingMode?: "normal" | "exclusive";
  /**
   * How long a read or write waits for another process holding the session's
   * lock before failing with `SessionBusyError`. Waiting never blocks the
   * event loop.
   * @default {5000}
   */
  busyTimeoutMs?: number;
  /**
   * Open session files kept; beyond it the least recently used idle one is
   * closed (and reopened transparently on next use).
   * @default {256}
   */
  maxOpenSessions?: number;
  /**
   * A session file unused for this long is closed.
   * @default {60000}
   */
  idleCloseMs?: number;
  /**
   * SQLite page cache per open session, in KiB.
   * @default {2048}
   */
  cacheSizeKiB?: number;
  /**
   * Largest value, in serialised bytes. Deno KV's limit by default; raise it
   * for large values.
   * @default {65536}
   */
  maxValueBytes?: number;
  /**
   * The SQLite binding: `"node"` (Deno's built-in `node:sqlite`), `"ffi"`
   * (the SQLite C library through `Deno.dlopen`, needs `--allow-ffi`), or any
   * {@linkcode SqliteDriver}.
   * @default {"node"}
   */
  driver?: "node" | "ffi" | SqliteDriver;
  /**
   * The SQLite library for `driver: "ffi"`.
   * @default {env DENO_SQLITE_PATH, else the system's libsqlite3}
   */
  sqliteLibPath?: string;
}

/** Options of {@linkcode SessionStore.acquire}. */
export interface AcquireOptions {
  /** Cancels waiting for the turn. */
  signal?: AbortSignal;
  /**
   * Longest wait for the turn before `LeaseTimeoutError`.
   * @default {30000}
   */
  timeoutMs?: number;
}

/** Counters of {@linkcode SessionStore.stats}. */
export interface StoreStats {
  /** Session files open now. */
  openSessions: number;
  /** Sessions whose turn is held now. */
  leasedSessions: number;
  /** Callers waiting for a turn or for an open-file slot. */
  waiters: number;
  /** Operations running now. */
  inflight: number;
  /** Files closed to stay within `maxOpenSessions`. */
  evictions: number;
  /** Files opened since the store was made. */
  opens: number;
  /** Files closed since the store was made. */
  closes: number;
}

/** A session found on disk, from {@linkcode SessionStore.sessions}. */
export interface SessionInfo {
  /** The bot id. */
  botId: string;
  /** The session id. */
  sessionId: string;
  /** The session's directory. */
  path: string;
  /** Bytes of its database files. */
  sizeBytes: number;
  /** The newest write to any of its database files. */
  lastActivity: Date;
  /** Whether it is in use in this process or open in another. */
  open: boolean;
}

/** Options of {@linkcode SessionStore.sessions}. */
export interface SessionsOptions {
  /** Only this bot's sessions. */
  botId?: string;
}

/** Progress of a cleanup, reported after each session. */
export interface CleanupProgress {
  /** Sessions looked at so far. */
  scanned: number;
  /** Sessions deleted (or, in a dry run, that would be) so far. */
  deleted: number;
  /** Idle sessions kept because they were in use. */
  skippedInUse: number;
}

/** Options of {@linkcode SessionStore.cleanup}. */
export interface CleanupOptions {
  /** Delete sessions with no write for this long. Give this or `olderThanDays`. */
  olderThanMs?: number;
  /** Delete sessions with no write for this many days. @default {7} */
  olderThanDays?: number;
  /** Report what would be deleted, delete nothing. @default {false} */
  dryRun?: boolean;
  /** Stops the sweep; `cleanup()` then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called after each session looked at. */
  onProgress?: (progress: CleanupProgress) => void;
}

/** What a cleanup did. */
export interface CleanupReport {
  /** Sessions looked at. */
  scanned: number;
  /** Sessions deleted (in a dry run: that would have been). */
  deleted: number;
  /** Idle sessions kept because they were open or leased here or elsewhere. */
  skippedInUse: number;
  /** Bytes of the deleted sessions' database files. */
  bytesFreed: number;
  /** Sessions with no write since this moment counted as idle. */
  cutoff: Date;
  /** Whether this was a dry run. */
  dryRun: boolean;
  /** Sessions or directories that could not be handled. */
  errors: { path: string; message: string }[];
}

const DAY_MS = 86_400_000;

interface Waiter {
  resolve(): void;
  reject(error: unknown): void;
}

/** One session's state in this process. */
class Handle implements SessionRef {
  engine: BackendEngine | undefined;
  opening: Promise<BackendEngine> | undefined;
  /** Held from the first open until the store forgets the session. */
  pin: BackendHold | undefined;
  inflight = 0;
  views = 0;
  leased = false;
  leaseQueue: Waiter[] = [];
  lastUsed = 0;
  /** Set once the session was found damaged: it is not used again. */
  damaged: SessionCorruptedError | undefined;
  /** Watches and queue listeners of this session in this process. */
  subscribers = new Set<CommitSubscriber>();
  constructor(readonly botId: string, readonly sessionId: string, readonly key: string) {}
  get inUse(): boolean {
    return this.inflight > 0 || this.views > 0 || this.leased || this.leaseQueue.length > 0;
  }
}

/** The handle map's key of a session. */
function sessionKey(botId: string, sessionId: string): string {
  return `${encodeId(botId)}/${encodeId(sessionId)}`;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The longest delay a timer can wait (setTimeout's limit). */
const MAX_TIMER_MS = 2 ** 31 - 1;

function positive(
  name: string,
  value: number | undefined,
  fallback: number,
  { integer = false, max = Number.MAX_SAFE_INTEGER, infinite = false } = {},
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(`${name} must be a number: received ${String(value)}`);
  }
  if (value === Infinity && infinite) return value;
  if (value <= 0 || value > max || (integer && !Number.isInteger(value))) {
    throw new RangeError(
      `${name} must be a positive ${
        integer ? "integer" : "number"
      } up to ${max}: received ${value}`,
    );
  }
  return value;
}

/** Whether `mode` selects SQLite's exclusive locking mode. */
function isExclusive(mode: SessionStoreOptions["lockingMode"]): boolean {
  if (mode === undefined || mode === "normal") return false;
  if (mode === "exclusive") return true;
  throw new TypeError(`lockingMode must be "normal" or "exclusive": received ${String(mode)}`);
}

/**
 * Keeps one SQLite database per `(botId, sessionId)` under `root` and hands
 * out Deno KV-style views of them.
 *
 * Files are opened lazily and shared: concurrent `openKv` calls for one
 * session open its file once. At most `maxOpenSessions` files are open; the
 * least recently used idle one is closed to make room, and files idle for
 * `idleCloseMs` are closed. Views hold no file, so an evicted session reopens
 * on its next use.
 *
 * With `backend` instead of `root`, the sessions live in another engine
 * (`postgresBackend`, `denoKvBackend`) and everything above works the same.
 *
 * Permissions: `--allow-read` and `--allow-write` on `root` (plus
 * `--allow-ffi` and `--allow-env` for `driver: "ffi"`); for another
 * backend, what it needs (`--allow-net` to PostgreSQL, `--unstable-kv`
 * outside Deploy for Deno KV).
 *
 * @example One file per conversation
 * ```ts
 * import { SessionStore } from "@sessionkv/core";
 * import { equal } from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * await using store = new SessionStore({ root });
 * using kv = await store.openKv("support-bot", "user-42");
 * await kv.set(["messages", 1], { role: "user", text: "hi" });
 * equal((await kv.get(["messages", 1])).versionstamp?.length, 20);
 * await store.close();
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class SessionStore implements AsyncDisposable {
  readonly #backend: SessionBackend;
  readonly #busyTimeoutMs: number;
  readonly #maxOpen: number;
  readonly #idleCloseMs: number;
  readonly #maxValueBytes: number;

  readonly #handles = new Map<string, Handle>();
  /** Open handles with nothing running, least recently used first. */
  readonly #idle = new Map<string, Handle>();
  #slotsUsed = 0;
  #slotWaiters: Waiter[] = [];
  #inflight = 0;
  #drained: (() => void) | undefined;
  #idleTimer: ReturnType<typeof setInterval> | undefined;
  #closing: Promise<void> | undefined;
  readonly #onClose = new Set<() => void>();
  #counters = { evictions: 0, opens: 0, closes: 0 };

  /**
   * Makes a store. Nothing is opened until a session is used.
   *
   * @param options `root` (or `backend`) and tuning options.
   * @throws {TypeError} When neither or both of `root` and `backend` are
   *   given, or an option has the wrong type.
   * @throws {RangeError} When a numeric option is out of range.
   */
  constructor(options: SessionStoreOptions) {
    const { root, backend } = options ?? {};
    if (root !== undefined && backend !== undefined) {
      throw new TypeError("Give root or backend, not both");
    }
    this.#busyTimeoutMs = positive("busyTimeoutMs", options.busyTimeoutMs, 5000);
    this.#maxOpen = positive("maxOpenSessions", options.maxOpenSessions, 256, { integer: true });
    this.#idleCloseMs = positive("idleCloseMs", options.idleCloseMs, 60_000);
    const cacheSizeKiB = positive("cacheSizeKiB", options.cacheSizeKiB, 2048, { integer: true });
    this.#maxValueBytes = positive(
      "maxValueBytes",
      options.maxValueBytes,
      DEFAULT_MAX_VALUE_BYTES,
    );
    if (backend !== undefined) {
      if (typeof backend !== "object" || backend === null || typeof backend.open !== "function") {
        throw new TypeError(`backend must be a SessionBackend: received ${String(backend)}`);
      }
      this.#backend = backend;
    } else {
      if (typeof root !== "string" || root.length === 0) {
        throw new TypeError("root must be a non-empty string (or give a backend)");
      }
      this.#backend = new FilesBackend({
        root,
        wal: options.wal ?? true,
        exclusive: isExclusive(options.lockingMode),
        busyTimeoutMs: this.#busyTimeoutMs,
        cacheSizeKiB,
        driver: options.driver ?? "node",
        sqliteLibPath: options.sqliteLibPath,
      });
    }
  }

  /**
   * Builds a store from the environment, as the Python original read its
   * config: `SESSIONKV_ROOT` (default `./data/sessions`), `SESSIONKV_WAL`,
   * `SESSIONKV_BUSY_TIMEOUT_MS`, `SESSIONKV_LOCKING_MODE` (`normal` or
   * `exclusive`), and, when `SESSIONKV_CLEANUP_ENABLED` is
   * true, a cleanup every `SESSIONKV_CLEANUP_INTERVAL_HOURS` (default 1) of
   * sessions idle for `SESSIONKV_CLEANUP_OLDER_THAN_DAYS` (default 7),
   * stopped by `close()`.
   *
   * Permissions: `--allow-env` for those variables, plus the store's own.
   *
   * @param env Where to read the variables.
   * @param overrides Options that win over the environment.
   * @returns The store.
   * @throws {TypeError} When a variable is malformed.
   * @throws {RangeError} When a variable is out of range.
   *
   * @example From variables
   * ```ts
   * import { SessionStore } from "@sessionkv/core";
   * import { equal } from "node:assert/strict";
   *
   * const root = await Deno.makeTempDir();
   * const env: Record<string, string> = { SESSIONKV_ROOT: root, SESSIONKV_WAL: "false" };
   * await using store = SessionStore.fromEnv((name) => env[name]);
   * equal(store.root, root);
   * await store.close();
   * await Deno.remove(root, { recursive: true });
   * ```
   */
  static fromEnv(
    env: EnvLookup = processEnv,
    overrides: Partial<SessionStoreOptions> = {},
  ): SessionStore {
    const cleanup = cleanupSettingsFromEnv(env);
    const lockingMode = envChoice(env, "SESSIONKV_LOCKING_MODE", ["normal", "exclusive"]);
    const store = new SessionStore({
      ...storeOptionsFromEnv(env),
      ...(lockingMode === undefined ? {} : { lockingMode }),
      ...overrides,
    });
    if (cleanup.enabled) {
      scheduleCleanup(store, { schedule: cleanup.schedule, olderThanDays: cleanup.olderThanDays });
    }
    return store;
  }

  /** The root directory, or for another backend where it keeps sessions (redacted). */
  get root(): string {
    return this.#backend.location;
  }

  /** The SQLite driver in use; `undefined` for a backend other than SQLite files. */
  get driver(): SqliteDriver | undefined {
    return this.#backend instanceof FilesBackend ? this.#backend.driver : undefined;
  }

  /** Where sessions are kept. */
  get backend(): SessionBackend {
    return this.#backend;
  }

  /**
   * Opens (creating if needed) a session and returns a view of it. Close the
   * view when done (`using kv = ...`).
   *
   * @param botId Any non-empty string up to 255 UTF-8 bytes.
   * @param sessionId Any non-empty string up to 255 UTF-8 bytes.
   * @returns A `SessionKv` for the session.
   * @throws {TypeError} On an invalid id.
   * @throws {SessionStoreClosedError} After `close()`.
   * @throws {SessionCorruptedError} When the session's file is damaged.
   */
  async openKv(botId: string, sessionId: string): Promise<SessionKv> {
    const handle = this.#handle(botId, sessionId);
    handle.views++;
    try {
      await this.#run(handle, () => undefined);
    } catch (error) {
      this.#releaseView(handle);
      throw error;
    }
    return this.#view(handle);
  }

  /**
   * Waits for an exclusive turn on a session (first come, first served),
   * exclusive across processes on this host too. A holder that dies
   * releases its turn with it.
   *
   * @param botId The bot id.
   * @param sessionId The session id.
   * @param options `timeoutMs` (default 30 s) and an abort `signal`.
   * @returns The lease; release it with `release()` or `await using`.
   * @throws {LeaseTimeoutError} When the turn did not come in time.
   * @throws {SessionStoreClosedError} After `close()`.
   */
  async acquire(
    botId: string,
    sessionId: string,
    options: AcquireOptions = {},
  ): Promise<SessionLease> {
    const timeoutMs = positive("timeoutMs", options.timeoutMs, 30_000, {
      max: MAX_TIMER_MS,
      infinite: true,
    });
    const signal = options.signal;
    signal?.throwIfAborted();
    const handle = this.#handle(botId, sessionId);
    const deadline = Date.now() + timeoutMs;
    const timeout = () =>
      new LeaseTimeoutError(
        `Timed out after ${timeoutMs} ms waiting for session "${sessionId}" of bot "${botId}"`,
      );
    // 1. The turn in this process.
    if (handle.leased || handle.leaseQueue.length > 0) {
      await new Promise<void>((resolve, reject) => {
        const waiter: Waiter = {
          resolve: () => {
            cleanup();
            resolve();
          },
          reject: (error) => {
            cleanup();
            reject(error);
          },
        };
        const remove = (error: unknown) => {
          const i = handle.leaseQueue.indexOf(waiter);
          if (i >= 0) handle.leaseQueue.splice(i, 1);
          waiter.reject(error);
          this.#forget(handle);
        };
        const timer = timeoutMs === Infinity
          ? undefined
          : setTimeout(() => remove(timeout()), timeoutMs);
        const onAbort = () => remove(signal!.reason);
        signal?.addEventListener("abort", onAbort, { once: true });
        const cleanup = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
        };
        handle.leaseQueue.push(waiter);
      });
    } else {
      this.#assertOpen();
    }
    handle.leased = true;
    // 2. The turn across processes (and hosts, for a shared backend).
    let hold: BackendHold;
    try {
      await this.#run(handle, () => undefined);
      hold = await this.#backend.lease(handle, {
        deadline,
        signal,
        timeout,
        assertOpen: () => this.#assertOpen(),
      });
    } catch (error) {
      this.#passTurn(handle);
      throw error;
    }
    handle.views++;
    const kv = this.#view(handle);
    return new SessionLease(kv, botId, sessionId, async () => {
      kv[Symbol.dispose]();
      try {
        await hold.release();
      } finally {
        this.#passTurn(handle);
      }
    });
  }

  /**
   * Runs `fn` during an exclusive turn on a session and releases the turn
   * afterwards, also when `fn` throws.
   *
   * @param botId The bot id.
   * @param sessionId The session id.
   * @param fn Work to do with the session's KV.
   * @param options As for {@linkcode SessionStore.acquire}.
   * @returns What `fn` returns.
   */
  async withSession<T>(
    botId: string,
    sessionId: string,
    fn: (kv: SessionKv) => T | Promise<T>,
    options?: AcquireOptions,
  ): Promise<T> {
    await using lease = await this.acquire(botId, sessionId, options);
    return await fn(lease.kv);
  }

  /**
   * Lists the sessions on disk, streaming (the tree is never loaded into
   * memory). Reads only file metadata: no database is opened.
   *
   * @param options `botId` to list one bot's sessions.
   * @returns Each session's ids, path, size, last activity and whether it is in use.
   */
  async *sessions(options: SessionsOptions = {}): AsyncIterable<SessionInfo> {
    this.#assertOpen();
    if (options.botId !== undefined) validateId(options.botId, "botId");
    for await (const s of this.#backend.sessions(options.botId)) {
      const h = this.#handles.get(sessionKey(s.botId, s.sessionId));
      const here = h !== undefined &&
        (h.inUse || h.engine !== undefined || h.opening !== undefined);
      yield {
        botId: s.botId,
        sessionId: s.sessionId,
        path: s.path,
        sizeBytes: s.sizeBytes,
        lastActivity: s.lastActivity,
        open: here || s.openElsewhere,
      };
    }
  }

  /**
   * Deletes a session: closes its file and removes its directory. Views of
   * it still open would start a new, empty session on their next use.
   *
   * @returns `true` when the session existed.
   * @throws {SessionBusyError} When it stays open in another process (or
   *   leased) for longer than `busyTimeoutMs`.
   */
  async deleteSession(botId: string, sessionId: string): Promise<boolean> {
    const h = this.#handle(botId, sessionId);
    const deadline = Date.now() + this.#busyTimeoutMs;
    try {
      for (let delay = 1;; delay = Math.min(delay * 2, 20)) {
        if (h.inflight === 0 && h.opening === undefined) {
          await this.#closeHandle(h);
          this.#unpin(h); // Even with views open: they will start afresh.
          const result = await this.#backend.deleteSession(h);
          if (result === "absent") return false;
          if (result === "deleted") {
            h.damaged = undefined; // Gone with its storage: the session starts afresh.
            logger.info("Deleted session {botId}/{sessionId}", { botId, sessionId });
            return true;
          }
        }
        if (Date.now() >= deadline) {
          throw new SessionBusyError(
            `Session "${sessionId}" of bot "${botId}" stayed open or leased for ${this.#busyTimeoutMs} ms`,
          );
        }
        await sleep(delay);
      }
    } finally {
      this.#forget(h);
    }
  }

  /**
   * Deletes every session with no write since the cutoff, judged by the
   * newest modification time of its database files (under WAL a commit
   * touches only the `-wal` file). Never deletes a session that is in use:
   * a view not closed, a lease held or an operation running in this process,
   * or the session open in another process. Expired keys of sessions open in
   * this process are swept from disk too.
   *
   * @param options The cutoff (`olderThanMs` or `olderThanDays`, default 7
   *   days), `dryRun`, `signal`, `onProgress`.
   * @returns What was deleted, kept and could not be handled.
   */
  async cleanup(options: CleanupOptions = {}): Promise<CleanupReport> {
    this.#assertOpen();
    if (options.olderThanMs !== undefined && options.olderThanDays !== undefined) {
      throw new TypeError("Give olderThanMs or olderThanDays, not both");
    }
    const olderThanMs = options.olderThanMs ??
      (options.olderThanDays === undefined ? 7 * DAY_MS : options.olderThanDays * DAY_MS);
    if (typeof olderThanMs !== "number" || Number.isNaN(olderThanMs) || olderThanMs < 0) {
      throw new RangeError(`The idle time must be a non-negative number: received ${olderThanMs}`);
    }
    const dryRun = options.dryRun ?? false;
    const cutoffMs = Date.now() - olderThanMs;
    const report: CleanupReport = {
      scanned: 0,
      deleted: 0,
      skippedInUse: 0,
      bytesFreed: 0,
      cutoff: new Date(cutoffMs),
      dryRun,
      errors: [],
    };
    const signal = options.signal;
    await this.#backend.cleanup({
      cutoffMs,
      dryRun,
      tally: report,
      check: () => {
        signal?.throwIfAborted();
        this.#assertOpen();
      },
      progress: () =>
        options.onProgress?.({
          scanned: report.scanned,
          deleted: report.deleted,
          skippedInUse: report.skippedInUse,
        }),
      local: (ref) => this.#local(ref),
      sweepExpired: (ref) => this.#sweepExpired(this.#handle(ref.botId, ref.sessionId)),
    });
    if (!dryRun) await this.#sweepExpiredOpen();
    logger.info(
      "Cleanup {dryRun}: scanned {scanned}, deleted {deleted}, kept in use {skippedInUse}",
      { ...report },
    );
    return report;
  }

  /** What cleanup may know of a session in this process. */
  #local(ref: SessionRef): LocalSession | undefined {
    const h = this.#handles.get(sessionKey(ref.botId, ref.sessionId));
    if (h === undefined) return undefined;
    return {
      inUse: h.inUse || h.opening !== undefined,
      lastUsed: h.lastUsed,
      open: h.engine !== undefined,
      close: async () => {
        await this.#closeHandle(h);
        this.#forget(h);
      },
    };
  }

  async #sweepExpiredOpen(): Promise<void> {
    for (const h of [...this.#handles.values()]) {
      if (h.engine !== undefined) await this.#sweepExpired(h);
    }
  }

  async #sweepExpired(h: Handle): Promise<void> {
    const now = Date.now();
    await this.#run(h, (engine) => (engine as BackendEngine).sweepExpired?.(now)).catch(
      (error) => logger.warn("Expiry sweep of {key} failed: {error}", { key: h.key, error }),
    );
    this.#forget(h);
  }

  /**
   * Counters for monitoring.
   *
   * @returns A snapshot of the store's counters.
   */
  stats(): StoreStats {
    let leased = 0;
    let waiters = this.#slotWaiters.length;
    for (const h of this.#handles.values()) {
      if (h.leased) leased++;
      waiters += h.leaseQueue.length;
    }
    let open = 0;
    for (const h of this.#handles.values()) if (h.engine) open++;
    return {
      openSessions: open,
      leasedSessions: leased,
      waiters,
      inflight: this.#inflight,
      ...this.#counters,
    };
  }

  /**
   * Waits for running operations, closes every file and stops schedules.
   * Later calls reject with `SessionStoreClosedError`. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Same as {@linkcode SessionStore.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal Registers work to stop on close (schedules). */
  onClose(fn: () => void): () => void {
    this.#onClose.add(fn);
    return () => this.#onClose.delete(fn);
  }

  async #close(): Promise<void> {
    const closed = new SessionStoreClosedError();
    for (const w of this.#slotWaiters.splice(0)) w.reject(closed);
    for (const h of this.#handles.values()) {
      for (const w of h.leaseQueue.splice(0)) w.reject(closed);
    }
    for (const fn of this.#onClose) fn();
    this.#onClose.clear();
    for (const h of this.#handles.values()) {
      for (const s of [...h.subscribers]) s.closed();
    }
    if (this.#inflight > 0) {
      await new Promise<void>((resolve) => this.#drained = resolve);
    }
    for (const h of this.#handles.values()) {
      // Wait for opens that are still under way, then close.
      await h.opening?.catch(() => undefined);
      await this.#closeHandle(h);
      this.#unpin(h);
    }
    this.#handles.clear();
    this.#stopIdleTimer();
    await this.#backend.close();
  }

  #assertOpen(): void {
    if (this.#closing) throw new SessionStoreClosedError();
  }

  #handle(botId: string, sessionId: string): Handle {
    validateId(botId, "botId");
    validateId(sessionId, "sessionId");
    this.#assertOpen();
    const rel = sessionKey(botId, sessionId);
    let handle = this.#handles.get(rel);
    if (handle === undefined) {
      handle = new Handle(botId, sessionId, rel);
      this.#handles.set(rel, handle);
    }
    return handle;
  }

  /**
   * Drops a handle nobody uses and whose engine is closed: releases its pin
   * (which tells cleanup in other processes that the session is in use) and
   * removes it from the map.
   */
  #forget(h: Handle): void {
    // A damaged session stays known, so it is not reopened and written to.
    if (!h.inUse && h.engine === undefined && h.opening === undefined && !h.damaged) {
      this.#unpin(h);
      this.#handles.delete(h.key);
    }
  }

  #unpin(h: Handle): void {
    const pin = h.pin;
    h.pin = undefined;
    if (pin === undefined) return;
    Promise.resolve()
      .then(() => pin.release())
      .catch((error) => logger.warn("Unpinning {key} failed: {error}", { key: h.key, error }));
  }

  #view(h: Handle): SessionKv {
    let released = false;
    const access: KvAccess = {
      run: <T>(op: (engine: KvEngine) => MaybePromise<T>) => this.#run(h, op),
      maxValueBytes: this.#maxValueBytes,
      release: () => {
        if (released) return;
        released = true;
        this.#releaseView(h);
      },
      committed: (plan) => {
        for (const s of h.subscribers) s.committed(plan);
      },
      subscribe: (subscriber) => {
        h.subscribers.add(subscriber);
        return () => h.subscribers.delete(subscriber);
      },
    };
    return new SessionKv(access);
  }

  #releaseView(h: Handle): void {
    h.views--;
    this.#forget(h);
  }

  #passTurn(h: Handle): void {
    const next = h.leaseQueue.shift();
    if (next) {
      next.resolve();
    } else {
      h.leased = false;
      this.#forget(h);
    }
  }

  /**
   * Runs `op` on the session's engine, opening the file if needed. An open
   * session whose `op` answers synchronously (a SQLite file) settles without
   * an extra async frame: most reads are that, and the frame cost a
   * microtask turn and a promise per call.
   */
  #run<T>(h: Handle, op: (engine: KvEngine) => MaybePromise<T>): Promise<T> {
    if (this.#closing) return Promise.reject(new SessionStoreClosedError());
    if (h.damaged) return Promise.reject(h.damaged);
    const engine = h.engine;
    if (engine === undefined) return this.#openAndRun(h, op);
    this.#idle.delete(h.key);
    this.#started(h);
    let result: MaybePromise<T>;
    try {
      result = op(engine);
    } catch (error) {
      const thrown = this.#checkDamage(h, error);
      this.#finished(h);
      return Promise.reject(thrown);
    }
    if (!(result instanceof Promise)) {
      this.#finished(h);
      return Promise.resolve(result);
    }
    return result.then(
      (value) => {
        this.#finished(h);
        return value;
      },
      (error) => {
        const thrown = this.#checkDamage(h, error);
        this.#finished(h);
        throw thrown;
      },
    );
  }

  /** {@linkcode #run} for a session whose file is not open yet. */
  async #openAndRun<T>(h: Handle, op: (engine: KvEngine) => MaybePromise<T>): Promise<T> {
    this.#started(h);
    try {
      const engine = await (h.opening ??= this.#open(h));
      return await op(engine);
    } catch (error) {
      throw this.#checkDamage(h, error);
    } finally {
      this.#finished(h);
    }
  }

  #started(h: Handle): void {
    h.inflight++;
    this.#inflight++;
  }

  #finished(h: Handle): void {
    h.inflight--;
    this.#inflight--;
    h.lastUsed = Date.now();
    if (h.damaged && h.inflight === 0) this.#closeHandle(h);
    if (h.inflight === 0) this.#becameIdle(h);
    if (this.#inflight === 0) this.#drained?.();
  }

  /**
   * Damage found by an operation (SQLITE_CORRUPT, SQLITE_NOTADB) marks the
   * session: its file is closed and never written again by this store, and
   * every later operation fails at once with the same SessionCorruptedError.
   */
  #checkDamage(h: Handle, error: unknown): unknown {
    const damage = error instanceof SessionCorruptedError
      ? error
      : this.#backend.damage?.(h, error);
    if (damage === undefined) return error;
    if (h.damaged === undefined) {
      h.damaged = damage;
      logger.error("Session {botId}/{sessionId} is damaged: {error}", {
        botId: h.botId,
        sessionId: h.sessionId,
        error,
      });
    }
    return h.damaged;
  }

  #becameIdle(h: Handle): void {
    if (h.engine === undefined) {
      this.#forget(h);
      return;
    }
    if (this.#slotWaiters.length > 0 && !this.#closing) {
      // Someone waits for a slot: hand this file's slot over.
      this.#counters.evictions++;
      this.#closeHandle(h, false);
      this.#slotWaiters.shift()!.resolve();
      this.#forget(h);
      return;
    }
    this.#idle.delete(h.key);
    this.#idle.set(h.key, h);
    this.#startIdleTimer();
  }

  /** Waits for a free open-file slot, closing the least recently used idle file if needed. */
  async #takeSlot(): Promise<void> {
    if (this.#slotsUsed < this.#maxOpen) {
      this.#slotsUsed++;
      return;
    }
    for (const h of this.#idle.values()) {
      this.#counters.evictions++;
      this.#closeHandle(h, false);
      this.#forget(h);
      return; // The slot passes from the closed file to this one.
    }
    await new Promise<void>((resolve, reject) => this.#slotWaiters.push({ resolve, reject }));
  }

  #releaseSlot(): void {
    const next = this.#slotWaiters.shift();
    if (next) next.resolve();
    else this.#slotsUsed--;
  }

  async #open(h: Handle): Promise<BackendEngine> {
    try {
      await this.#takeSlot();
    } catch (error) {
      h.opening = undefined;
      throw error;
    }
    // A session still in use keeps its pin while its engine is closed, so no
    // cleanup anywhere can remove it meanwhile: reuse that pin.
    const held = h.pin;
    let pin: BackendHold | undefined;
    try {
      pin = held ?? await this.#backend.pin(h);
      const engine = await this.#backend.open(h);
      h.engine = engine;
      h.pin = pin;
      this.#counters.opens++;
      logger.debug("Opened session {botId}/{sessionId}", {
        botId: h.botId,
        sessionId: h.sessionId,
      });
      return engine;
    } catch (error) {
      if (held === undefined) await pin?.release();
      this.#releaseSlot();
      throw error;
    } finally {
      h.opening = undefined;
    }
  }

  /** Closes a handle's engine (if open) and frees its slot unless it is being handed over. */
  #closeHandle(h: Handle, releaseSlot = true): Promise<void> {
    this.#idle.delete(h.key);
    const engine = h.engine;
    if (engine === undefined) return Promise.resolve();
    h.engine = undefined;
    this.#counters.closes++;
    if (releaseSlot) this.#releaseSlot();
    // A SQLite engine closes synchronously, here; a failed close is logged
    // (the session reopens on its next use either way).
    const failed = (error: unknown) =>
      logger.warn("Closing {key} failed: {error}", { key: h.key, error });
    try {
      return Promise.resolve(engine.close()).catch(failed);
    } catch (error) {
      failed(error);
      return Promise.resolve();
    }
  }

  #startIdleTimer(): void {
    if (this.#idleTimer !== undefined) return;
    const every = Math.max(10, Math.min(this.#idleCloseMs / 2, 5000));
    this.#idleTimer = setInterval(() => this.#closeIdle(), every);
    // Idle closing alone must not keep the process alive.
    Deno.unrefTimer(Number(this.#idleTimer));
  }

  #stopIdleTimer(): void {
    if (this.#idleTimer === undefined) return;
    clearInterval(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  #closeIdle(): void {
    const cutoff = Date.now() - this.#idleCloseMs;
    for (const h of this.#idle.values()) {
      if (h.lastUsed > cutoff) break; // The rest were used more recently.
      this.#closeHandle(h);
      this.#forget(h);
    }
    if (this.#idle.size === 0) this.#stopIdleTimer();
  }
}
