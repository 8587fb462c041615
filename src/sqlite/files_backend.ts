/**
 * The default backend: one SQLite file per session under a root directory
 * (`root/<bot>/<session>/kv.sqlite3`). Cross-process state lives in the file
 * system: `open.lock` is shared-locked by every process that has the session
 * open, `lease.lock` exclusively by the lease holder, and idleness is read
 * from the files' modification times (see `../session_dirs.ts`).
 *
 * @module
 */
import { dirname, join } from "node:path";
import { getLogger } from "@logtape/logtape";
import type {
  BackendEngine,
  BackendHold,
  BackendSessionInfo,
  CleanupRun,
  LeaseRequest,
  SessionBackend,
  SessionRef,
} from "../backend.ts";
import { SessionCorruptedError } from "../errors.ts";
import { encodeId, isHashed } from "../session_id.ts";
import {
  type Activity,
  activityOf,
  DB_FILE,
  emptyTrash,
  LEASE_LOCK,
  lockForRemoval,
  OPEN_LOCK,
  type RemovalLocks,
  removeIfEmpty,
  removeLocked,
  TRASH_DIR,
  type WalkError,
  walkSessions,
  writeIdFile,
} from "../session_dirs.ts";
import { SQLITE_CORRUPT, SQLITE_NOTADB, type SqliteDriver, SqliteError } from "./driver.ts";
import { loadFfiDriver } from "./ffi_driver.ts";
import { nodeDriver } from "./node_driver.ts";
import { SqliteEngine } from "./sqlite_engine.ts";

const logger = getLogger(["sessionkv", "files"]);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Options of {@linkcode FilesBackend}: the SQLite settings of `SessionStoreOptions`. */
export interface FilesBackendOptions {
  /** Directory that holds every session. */
  root: string;
  /** WAL with `synchronous=NORMAL`, or the rollback journal with `FULL`. */
  wal: boolean;
  /** SQLite's `locking_mode=EXCLUSIVE`: each open file stays locked by this process. */
  exclusive: boolean;
  /** How long SQLite calls wait for another process's lock. */
  busyTimeoutMs: number;
  /** Page cache per open session, KiB. */
  cacheSizeKiB: number;
  /** The binding. */
  driver: "node" | "ffi" | SqliteDriver;
  /** The library for `"ffi"`. */
  sqliteLibPath?: string | undefined;
}

function resolveDriver(driver: FilesBackendOptions["driver"], libPath?: string): SqliteDriver {
  if (driver === "node") return nodeDriver;
  if (driver === "ffi") return loadFfiDriver(libPath === undefined ? {} : { path: libPath });
  if (typeof driver === "object" && driver !== null && typeof driver.open === "function") {
    return driver;
  }
  throw new TypeError(`driver must be "node", "ffi" or a SqliteDriver: received ${String(driver)}`);
}

/** A session's directory relative to the root. */
function relDir(ref: SessionRef): string {
  return `${encodeId(ref.botId)}/${encodeId(ref.sessionId)}`;
}

/** Sessions as SQLite files under a root directory. */
export class FilesBackend implements SessionBackend {
  readonly #root: string;
  readonly #options: FilesBackendOptions;
  readonly #driver: SqliteDriver;

  /** @param options The root and the SQLite settings. */
  constructor(options: FilesBackendOptions) {
    this.#root = options.root;
    this.#options = options;
    this.#driver = resolveDriver(options.driver, options.sqliteLibPath);
  }

  /** The root directory. */
  get location(): string {
    return this.#root;
  }

  /** The SQLite binding in use. */
  get driver(): SqliteDriver {
    return this.#driver;
  }

  #dir(ref: SessionRef): string {
    return join(this.#root, relDir(ref));
  }

  /**
   * Creates the session directory and takes a shared lock on its `open.lock`,
   * which tells cleanup in any process that the session is open. If cleanup
   * moved the directory away meanwhile, starts again on a fresh directory.
   */
  async pin(ref: SessionRef): Promise<BackendHold> {
    const dir = this.#dir(ref);
    // These calls never wait on another process (the lock is only tried), so
    // their synchronous forms are used: each async file op costs a thread-pool
    // round trip, which dominated the cost of reopening a session.
    const path = join(dir, OPEN_LOCK);
    for (;;) {
      let file: Deno.FsFile;
      try {
        Deno.mkdirSync(dir, { recursive: true });
        // Long ids are named by hash: their directories keep the id.
        if (isHashed(encodeId(ref.botId))) writeIdFile(dirname(dir), ref.botId);
        if (isHashed(encodeId(ref.sessionId))) writeIdFile(dir, ref.sessionId);
        file = Deno.openSync(path, { read: true, write: true, create: true });
      } catch (error) {
        // A cleanup removed the directory or an empty parent meanwhile.
        // AlreadyExists: it was being moved into the trash under us.
        if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.AlreadyExists) {
          continue;
        }
        throw error;
      }
      let delay = 1;
      while (!file.tryLockSync(false)) {
        // Cleanup holds it exclusively for a moment while it moves the directory.
        await sleep(delay);
        delay = Math.min(delay * 2, 20);
      }
      const held = file.statSync();
      let current: Deno.FileInfo | undefined;
      try {
        current = Deno.lstatSync(path);
      } catch {
        current = undefined;
      }
      if (current !== undefined && current.ino === held.ino && current.dev === held.dev) {
        return { release: () => file.close() };
      }
      file.close();
    }
  }

  /** Opens the session's database, creating it. */
  async open(ref: SessionRef): Promise<BackendEngine> {
    const path = join(this.#dir(ref), DB_FILE);
    let info: Deno.FileInfo | undefined;
    try {
      info = Deno.lstatSync(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (info !== undefined && !info.isFile) {
      throw new SessionCorruptedError(`Session database "${path}" is not a regular file`, path);
    }
    try {
      return await SqliteEngine.open(this.#driver, path, {
        wal: this.#options.wal,
        exclusive: this.#options.exclusive,
        busyTimeoutMs: this.#options.busyTimeoutMs,
        cacheSizeKiB: this.#options.cacheSizeKiB,
      });
    } catch (error) {
      // Not SQLITE_CANTOPEN: out of inodes, descriptors or permissions is no
      // reason to call a healthy file damaged.
      throw this.damage(ref, error) ?? error;
    }
  }

  /** An exclusive lock on `lease.lock`, polled until the deadline. */
  async lease(ref: SessionRef, request: LeaseRequest): Promise<BackendHold> {
    const file = await Deno.open(join(this.#dir(ref), LEASE_LOCK), {
      read: true,
      write: true,
      create: true,
    });
    try {
      let delay = 1;
      while (!(await file.tryLock(true))) {
        request.signal?.throwIfAborted();
        request.assertOpen();
        if (Date.now() >= request.deadline) throw request.timeout();
        await sleep(Math.min(delay, Math.max(1, request.deadline - Date.now())));
        delay = Math.min(delay * 2, 25);
      }
    } catch (error) {
      file.close();
      throw error;
    }
    return {
      release: async () => {
        try {
          await file.unlock();
        } finally {
          file.close();
        }
      },
    };
  }

  /** Walks the root; reads only file metadata, opens no database. */
  async *sessions(botId: string | undefined): AsyncIterable<BackendSessionInfo> {
    const errors: WalkError[] = [];
    const bot = botId === undefined ? undefined : { botId, dir: join(this.#root, encodeId(botId)) };
    for await (const s of walkSessions(this.#root, errors, bot)) {
      let activity: Activity | undefined;
      let locks: RemovalLocks | undefined;
      try {
        activity = activityOf(s.dir);
        if (activity === undefined) continue;
        locks = lockForRemoval(s.dir, activity.leaseLock);
        locks?.release();
      } catch {
        continue; // Removed meanwhile, or unreadable.
      }
      yield {
        botId: s.botId,
        sessionId: s.sessionId,
        path: s.dir,
        sizeBytes: activity.sizeBytes,
        lastActivity: new Date(activity.lastActivityMs),
        openElsewhere: locks === undefined,
      };
    }
    for (const e of errors) logger.warn("Could not read {path}: {message}", { ...e });
  }

  /** Removes the directory unless another process has the session open or leased. */
  async deleteSession(ref: SessionRef): Promise<"deleted" | "absent" | "busy"> {
    const dir = this.#dir(ref);
    try {
      await Deno.lstat(dir);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return "absent";
      throw error;
    }
    let locks: RemovalLocks | undefined;
    try {
      locks = lockForRemoval(dir);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (locks === undefined) return "busy";
    await removeLocked(this.#root, dir, locks);
    return "deleted";
  }

  /** Walks the root and removes idle session directories one by one. */
  async cleanup(run: CleanupRun): Promise<void> {
    if (!run.dryRun) await emptyTrash(this.#root);
    for await (const s of walkSessions(this.#root, run.tally.errors)) {
      run.check();
      run.tally.scanned++;
      try {
        await this.#sweepOne(run, s, s.dir);
      } catch (error) {
        run.tally.errors.push({ path: s.dir, message: (error as Error).message });
      }
      run.progress();
    }
    if (!run.dryRun) await this.#removeEmptyBots();
  }

  async #sweepOne(run: CleanupRun, ref: SessionRef, dir: string): Promise<void> {
    const { tally, dryRun } = run;
    const measuredFrom = Date.now();
    const activity = activityOf(dir);
    if (activity === undefined) {
      // No database: an emptied directory (or one being created, whose opener
      // retries if it disappears).
      if (!dryRun) await removeIfEmpty(dir);
      return;
    }
    if (activity.lastActivityMs > run.cutoffMs) {
      // Active: not deleted, but expired keys are swept from disk when due.
      if (!dryRun && (activity.nextExpiryMs ?? Infinity) <= Date.now()) {
        await run.sweepExpired(ref);
      }
      return;
    }
    let seen = activity;
    const local = run.local(ref);
    if (local?.inUse) {
      tally.skippedInUse++;
      return;
    }
    // Used here while we measured: what we measured may miss that write.
    if (local !== undefined && local.lastUsed >= measuredFrom) return;
    if (local?.open) {
      if (dryRun) {
        // Closing would checkpoint the WAL and touch the files, so a dry run
        // counts an idle file of this process as removable without probing
        // other processes (our own lock would hide theirs).
        tally.deleted++;
        tally.bytesFreed += activity.sizeBytes;
        return;
      }
      // Idle here: close the file (it reopens transparently if used again).
      // Closing checkpoints the WAL, which touches the files but writes
      // nothing new: remember how they look afterwards.
      await local.close();
      seen = activityOf(dir) ?? activity;
    }
    const locks = lockForRemoval(dir, seen.leaseLock);
    if (locks === undefined) {
      tally.skippedInUse++;
      return;
    }
    if (dryRun) {
      // Nothing is removed, so a write since we measured changes nothing.
      locks.release();
      tally.deleted++;
      tally.bytesFreed += seen.sizeBytes;
      return;
    }
    // Under the locks nobody can open the session. If its files changed since
    // we looked, someone wrote meanwhile: keep it.
    const now = activityOf(dir);
    if (
      now === undefined || now.lastActivityMs !== seen.lastActivityMs ||
      now.sizeBytes !== seen.sizeBytes
    ) {
      locks.release();
      return;
    }
    await removeLocked(this.#root, dir, locks);
    logger.debug("Cleanup deleted {botId}/{sessionId}", { ...ref });
    tally.deleted++;
    tally.bytesFreed += now.sizeBytes;
  }

  /** Removes bot directories left empty (also ones that were empty before). */
  async #removeEmptyBots(): Promise<void> {
    try {
      for await (const entry of Deno.readDir(this.#root)) {
        if (!entry.isDirectory || entry.name === TRASH_DIR) continue;
        await removeIfEmpty(join(this.#root, entry.name));
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  /** SQLITE_CORRUPT or SQLITE_NOTADB as `SessionCorruptedError`. */
  damage(ref: SessionRef, error: unknown): SessionCorruptedError | undefined {
    if (error instanceof SessionCorruptedError) return error;
    if (
      error instanceof SqliteError &&
      (error.primaryCode === SQLITE_CORRUPT || error.primaryCode === SQLITE_NOTADB)
    ) {
      const path = join(this.#dir(ref), DB_FILE);
      return new SessionCorruptedError(
        `Session database "${path}" is damaged: ${error.message}`,
        path,
        { cause: error },
      );
    }
    return undefined;
  }

  /** Nothing to release: every file belongs to a session. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
