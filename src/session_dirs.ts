/**
 * The session directories on disk: walking them, measuring them, and removing
 * one safely. A session directory holds `kv.sqlite3` (with `-wal` / `-shm`),
 * `open.lock` (shared-locked by every process that has the session open) and
 * `lease.lock` (exclusively locked by the lease holder).
 *
 * Removal takes `open.lock` (and `lease.lock`) exclusively with a non-blocking
 * try, so a session open or leased anywhere on the host is never removed, then
 * renames the directory into `root/.trash/` (atomic) before deleting it. An
 * opener that raced with the removal notices that its lock file is no longer
 * at the session's path and starts over in a fresh directory.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { decodeId, ID_FILE, isHashed } from "./session_id.ts";

/** The database file inside a session directory. */
export const DB_FILE = "kv.sqlite3";
/** Shared-locked while a process has the session open. */
export const OPEN_LOCK = "open.lock";
/** Exclusively locked by the process whose lease is current. */
export const LEASE_LOCK = "lease.lock";
/**
 * Present while the session's queue holds messages: cleanup judges idleness
 * from file metadata only, and a session with pending messages is not idle.
 */
export const QUEUE_MARKER = "queue.pending";
/**
 * Written when a session's file closes while keys with `expireIn` remain: it
 * holds the time (epoch ms) the next one expires, so cleanup sweeps expired
 * rows from disk only where some are due.
 */
export const EXPIRY_MARKER = "expires.at";
/** Where directories being removed are moved first. */
export const TRASH_DIR = ".trash";

const DB_FILES = [DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`, `${DB_FILE}-journal`];

/** A session directory found on disk. */
export interface SessionDir {
  /** The bot id. */
  botId: string;
  /** The session id. */
  sessionId: string;
  /** The directory. */
  dir: string;
}

/** An error met while walking, reported instead of thrown. */
export interface WalkError {
  /** The path that could not be read. */
  path: string;
  /** What went wrong. */
  message: string;
}

/** Size and newest write of a session's files. */
export interface Activity {
  /** Bytes of the database files. */
  sizeBytes: number;
  /** The newest modification time among the database files (ms). */
  lastActivityMs: number;
  /** When the next key expires, if an expiry marker says so. */
  nextExpiryMs: number | undefined;
  /** Whether a `lease.lock` file exists (a lease was ever taken). */
  leaseLock: boolean;
}

/**
 * The ids encoded in the directory names under `dir`, with their paths.
 * Symbolic links are never followed; files are not sessions. One
 * synchronous listing per directory: an async listing costs a thread-pool
 * round trip per batch of entries, which dominated sweeping many sessions.
 */
function listIds(dir: string, errors: WalkError[]): [string, string][] {
  const ids: [string, string][] = [];
  try {
    for (const entry of Deno.readDirSync(dir)) {
      if (!entry.isDirectory || entry.isSymlink) continue;
      const path = join(dir, entry.name);
      let idFile: string | undefined;
      if (isHashed(entry.name)) {
        try {
          idFile = Deno.readTextFileSync(join(path, ID_FILE));
        } catch {
          continue; // Not (yet) a complete session directory.
        }
      }
      const id = decodeId(entry.name, idFile);
      if (id !== undefined) ids.push([id, path]);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      errors.push({ path: dir, message: (error as Error).message });
    }
  }
  return ids;
}

/**
 * Writes the id file of a directory named by hash, if it is missing. The
 * file is written beside and renamed into place, so it is whole or absent.
 */
export function writeIdFile(dir: string, id: string): void {
  const path = join(dir, ID_FILE);
  try {
    Deno.lstatSync(path);
    return;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const tmp = `${path}.${crypto.randomUUID()}`;
  Deno.writeTextFileSync(tmp, id);
  Deno.renameSync(tmp, path);
}

/**
 * Streams the session directories under `root`, holding one bot's
 * directory listing in memory at a time. Directories that are not encoded ids, symbolic links and files
 * are skipped; unreadable directories are added to `errors`.
 *
 * @param root The store's root.
 * @param botDir When given, only this bot's directory.
 */
export async function* walkSessions(
  root: string,
  errors: WalkError[],
  bot?: { botId: string; dir: string },
): AsyncGenerator<SessionDir> {
  const bots = bot === undefined ? listIds(root, errors) : [[bot.botId, bot.dir] as const];
  for (const [botId, botDir] of bots) {
    for (const [sessionId, dir] of listIds(botDir, errors)) {
      yield { botId, sessionId, dir };
    }
  }
}

/**
 * Measures a session from its files' metadata, without opening the database.
 * Idleness is the newest write to any of them: under WAL a commit touches only
 * the `-wal` file.
 *
 * @returns `undefined` when the directory holds no database file.
 */
export function activityOf(dir: string): Activity | undefined {
  // Synchronous metadata calls: each is a few microseconds, while an async
  // file op costs a thread-pool round trip (100+ µs), which made sweeping
  // 100,000 sessions take minutes.
  const names = new Set<string>();
  try {
    for (const entry of Deno.readDirSync(dir)) names.add(entry.name);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  let sizeBytes = 0;
  let lastActivityMs = -Infinity;
  let found = false;
  for (const name of DB_FILES) {
    if (!names.has(name)) continue;
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(join(dir, name));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue; // removed meanwhile
      throw error;
    }
    found = true;
    sizeBytes += info.size;
    const mtime = info.mtime?.getTime() ?? 0;
    if (mtime > lastActivityMs) lastActivityMs = mtime;
  }
  if (!found) return undefined;
  if (names.has(QUEUE_MARKER)) lastActivityMs = Infinity; // Pending messages: never idle.
  let nextExpiryMs: number | undefined;
  if (names.has(EXPIRY_MARKER)) {
    try {
      const at = Number(Deno.readTextFileSync(join(dir, EXPIRY_MARKER)));
      if (Number.isFinite(at)) nextExpiryMs = at;
    } catch {
      // Removed meanwhile, or unreadable: nothing to sweep.
    }
  }
  return { sizeBytes, lastActivityMs, nextExpiryMs, leaseLock: names.has(LEASE_LOCK) };
}

function tryLockExclusive(path: string): Deno.FsFile | "busy" | "missing" {
  let file: Deno.FsFile;
  try {
    // Read-only: a lock needs no write access, so listing works with
    // --allow-read alone.
    file = Deno.openSync(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "missing";
    throw error;
  }
  if (file.tryLockSync(true)) return file;
  file.close();
  return "busy";
}

/** The locks that keep a session from being opened while it is removed. */
export interface RemovalLocks {
  /** Releases the locks without removing anything. */
  release(): void;
}

/**
 * Takes `open.lock` and `lease.lock` exclusively without waiting.
 *
 * @param leaseLock `false` when the caller saw no `lease.lock` file: it is
 *   then not probed (a missing file costs a thrown NotFound). A lease holder
 *   also holds `open.lock`, so `open.lock` alone already keeps it safe.
 * @returns The locks, or `undefined` when any process has the session open
 *   or leased (or the directory is gone).
 */
export function lockForRemoval(dir: string, leaseLock = true): RemovalLocks | undefined {
  const open = tryLockExclusive(join(dir, OPEN_LOCK));
  if (typeof open === "string") return undefined;
  const lease = leaseLock ? tryLockExclusive(join(dir, LEASE_LOCK)) : "missing";
  if (lease === "busy") {
    open.close();
    return undefined;
  }
  return {
    release() {
      open.close();
      if (typeof lease !== "string") lease.close();
    },
  };
}

/**
 * Removes a session directory whose locks are held: renames it into the
 * trash (so no opener can see a half-deleted session), releases the locks,
 * deletes it, and removes parent directories left empty up to `root`.
 */
export async function removeLocked(
  root: string,
  dir: string,
  locks: RemovalLocks,
): Promise<void> {
  const trash = join(root, TRASH_DIR);
  const tomb = join(trash, crypto.randomUUID());
  try {
    await Deno.mkdir(trash, { recursive: true });
    await Deno.rename(dir, tomb);
  } finally {
    locks.release();
  }
  // A concurrent cleanup's emptyTrash() may have removed it already.
  await Deno.remove(tomb, { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  await removeIfEmpty(dirname(dir));
}

/**
 * Removes a bot directory (or an emptied session directory) that holds
 * nothing but, for a hashed name, its id file. Does nothing otherwise: an
 * opener racing with it retries when its directory disappears.
 */
export async function removeIfEmpty(dir: string): Promise<void> {
  try {
    await Deno.remove(dir);
    return;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
  }
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      names.push(e.name);
      if (names.length > 1) return;
    }
  } catch {
    return;
  }
  if (names.length === 1 && names[0] === ID_FILE) {
    await Deno.remove(join(dir, ID_FILE)).catch(() => undefined);
    await Deno.remove(dir).catch(() => undefined);
  }
}

/** Deletes what an interrupted removal left in the trash. */
export async function emptyTrash(root: string): Promise<void> {
  const trash = join(root, TRASH_DIR);
  try {
    for await (const entry of Deno.readDir(trash)) {
      await Deno.remove(join(trash, entry.name), { recursive: true }).catch(() => undefined);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}
