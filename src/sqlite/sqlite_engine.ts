/**
 * One session's SQLite database: schema, pragmas, cached statements, and the
 * `KvEngine` operations. Every call is synchronous SQLite work except when
 * another process holds the session's lock: SQLite's own busy handler would
 * block the event loop, so it is off (`busy_timeout = 0`) and `SQLITE_BUSY`
 * is retried here with asynchronous sleeps until `busyTimeoutMs`.
 *
 * @module
 */
import { withVersionstamp } from "../codec/key_codec.ts";
import { applyNumeric } from "../codec/numeric.ts";
import type { EncodedValue, ValueEncoding } from "../codec/value_codec.ts";
import { versionStep } from "../codec/versionstamp.ts";
import { dirname, join } from "node:path";
import type {
  CommitPlan,
  KvEngine,
  KvRow,
  MaybePromise,
  QueuedMessage,
  ReadRange,
} from "../engine.ts";
import { SessionBusyError } from "../errors.ts";
import { EXPIRY_MARKER, QUEUE_MARKER } from "../session_dirs.ts";
import {
  SQLITE_BUSY,
  SQLITE_LOCKED,
  type SqliteConnection,
  type SqliteDriver,
  SqliteError,
  type SqliteStatement,
} from "./driver.ts";

/** The schema version this release writes. */
export const SCHEMA_VERSION = 2;

const MIGRATIONS: readonly string[] = [
  // 1: the key-value table and the commit counter.
  `CREATE TABLE kv (
     k BLOB PRIMARY KEY NOT NULL,
     v BLOB NOT NULL,
     enc INTEGER NOT NULL,
     version INTEGER NOT NULL,
     exp INTEGER
   ) WITHOUT ROWID;
   CREATE INDEX kv_exp ON kv (exp) WHERE exp IS NOT NULL;
   CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 0), version INTEGER NOT NULL);
   INSERT INTO meta VALUES (0, 0);`,
  // 2: the message queue. Messages become deliverable at ready_at; a listener
  // claims one by setting deadline, after which it is deliverable again.
  `CREATE TABLE queue (
     id INTEGER PRIMARY KEY,
     ready_at INTEGER NOT NULL,
     payload BLOB NOT NULL,
     backoff TEXT NOT NULL,
     undelivered TEXT NOT NULL,
     deadline INTEGER
   );
   CREATE INDEX queue_ready ON queue (ready_at);`,
];

/** How a session database is opened. */
export interface SqliteEngineOptions {
  /** WAL with `synchronous=NORMAL`, else rollback journal with `synchronous=FULL`. */
  wal: boolean;
  /**
   * `locking_mode=EXCLUSIVE`: the file stays locked from its first read until
   * close, so no transaction takes a lock (and WAL keeps its index in memory,
   * without `-shm`).
   */
  exclusive: boolean;
  /** How long to keep retrying while another process holds the lock. */
  busyTimeoutMs: number;
  /** Page cache size in KiB. */
  cacheSizeKiB: number;
}

/** Whether an error is SQLite's "database is locked" (another connection holds the lock). */
export function isBusy(error: unknown): boolean {
  return error instanceof SqliteError &&
    (error.primaryCode === SQLITE_BUSY || error.primaryCode === SQLITE_LOCKED);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs `work`; while it fails with `SQLITE_BUSY`, retries it after short
 * asynchronous sleeps (1 ms doubling to 20 ms, jittered) until `timeoutMs`.
 *
 * @throws {SessionBusyError} When the lock was not released in time.
 */
export function retryBusy<T>(
  work: () => T,
  timeoutMs: number,
  what: string,
): MaybePromise<T> {
  try {
    return work();
  } catch (error) {
    if (!isBusy(error)) throw error;
    return retryLoop(work, timeoutMs, what, error);
  }
}

async function retryLoop<T>(
  work: () => T,
  timeoutMs: number,
  what: string,
  first: unknown,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  let last = first;
  while (Date.now() < deadline) {
    await sleep(
      Math.min(
        delay * (0.5 + Math.random()),
        Math.max(0, deadline - Date.now()),
      ),
    );
    delay = Math.min(delay * 2, 20);
    try {
      return work();
    } catch (error) {
      if (!isBusy(error)) throw error;
      last = error;
    }
  }
  throw new SessionBusyError(
    `Session ${what} stayed locked by another connection for ${timeoutMs} ms`,
    { cause: last },
  );
}

/**
 * Versions a connection may hand out between writes of `meta.version`.
 *
 * `meta.version` is a high-water mark, not the latest version: a commit that
 * finds the mark it wrote last still there owns every version up to it and
 * writes no `meta` page (half of a small commit's WAL writes); otherwise
 * (first commit on this connection, or another connection reserved since) it
 * continues above the stored mark and reserves the next range. Versions stay
 * strictly increasing across connections, processes and crashes, because
 * every version committed is at most the mark committed with it or before it;
 * a reopened session skips what its last connection left unused.
 */
const VERSION_RESERVE = 10_000;

let instances = 0;

/** A live row: unexpired at the bound time. */
const LIVE = "(exp IS NULL OR exp > ?)";

// One BLOB per row, the key and value end to end: each BLOB returned costs an
// allocation, which dominates a long list. `||` copies BLOB bytes unchanged
// in a UTF-8 database, which every session file is.
const LISTED = `SELECT length(k), CAST(k || v AS BLOB), enc, version FROM kv
  WHERE k >= ? AND k < ? AND ${LIVE} ORDER BY k`;

/**
 * Statements off the hot path, prepared on first use: each prepared statement
 * holds about 2 KiB, and most sessions never enqueue, sweep or list backwards.
 */
const SQL = {
  listDesc: `${LISTED} DESC LIMIT ?`,
  current: `SELECT v, enc FROM kv WHERE k = ? AND ${LIVE}`,
  del: "DELETE FROM kv WHERE k = ?",
  writeMark: "UPDATE meta SET version = ? WHERE id = 0",
  sweep: "DELETE FROM kv WHERE exp IS NOT NULL AND exp <= ?",
  minExpiry: "SELECT min(exp) FROM kv WHERE exp IS NOT NULL",
  enqueue: "INSERT INTO queue (ready_at, payload, backoff, undelivered) VALUES (?, ?, ?, ?)",
  nextMessage: `SELECT id, payload, backoff, undelivered FROM queue
    WHERE ready_at <= ?1 AND (deadline IS NULL OR deadline <= ?1)
    ORDER BY ready_at, id LIMIT 1`,
  claim: "UPDATE queue SET deadline = ? WHERE id = ?",
  unclaim: "UPDATE queue SET ready_at = ?, backoff = ?, deadline = NULL WHERE id = ?",
  ack: "DELETE FROM queue WHERE id = ?",
  nextReady: "SELECT min(max(ready_at, coalesce(deadline, 0))) FROM queue",
  queueSize: "SELECT count(*) FROM queue",
  dataVersion: "PRAGMA data_version",
} as const;

/** A session's SQLite database, open. */
export class SqliteEngine implements KvEngine {
  readonly #db: SqliteConnection;
  readonly #options: SqliteEngineOptions;
  readonly #path: string;
  #nextExpiry = Infinity;
  // The hot path's statements, prepared at open.
  readonly #get: SqliteStatement;
  readonly #listAsc: SqliteStatement;
  readonly #versionOf: SqliteStatement;
  readonly #put: SqliteStatement;
  readonly #readMark: SqliteStatement;
  readonly #prepared: { -readonly [K in keyof typeof SQL]?: SqliteStatement } = Object.create(null);
  /** The last version this connection committed; valid while it owns the mark. */
  #version = 0;
  /** The high-water mark this connection last wrote to `meta`, or -1. */
  #mark = -1;
  readonly #instance = ++instances;
  #markerPresent: boolean | undefined;
  /**
   * Whether an expiry marker may be on disk: the file had expiring keys when
   * opened, this connection wrote one, or cleanup asked for a sweep (a stale
   * marker is what sends it). Otherwise close() has none to remove, and does
   * not pay for a thrown NotFound on every close.
   */
  #expiryMarkerMayExist: boolean;

  private constructor(
    db: SqliteConnection,
    path: string,
    options: SqliteEngineOptions,
  ) {
    this.#db = db;
    this.#path = path;
    this.#options = options;
    // Not the key: the caller has it, and every BLOB returned costs a copy.
    this.#get = db.prepare(`SELECT v, enc, version, exp FROM kv WHERE k = ? AND ${LIVE}`);
    this.#listAsc = db.prepare(`${LISTED} LIMIT ?`);
    this.#versionOf = db.prepare(`SELECT version FROM kv WHERE k = ? AND ${LIVE}`);
    this.#put = db.prepare(
      "INSERT OR REPLACE INTO kv (k, v, enc, version, exp) VALUES (?, ?, ?, ?, ?)",
    );
    this.#readMark = db.prepare("SELECT version FROM meta WHERE id = 0");
    this.#nextExpiry = this.#readNextExpiry();
    this.#expiryMarkerMayExist = this.#nextExpiry !== Infinity;
  }

  /** The statement `name`, prepared on first use. */
  #sql(name: keyof typeof SQL): SqliteStatement {
    return this.#prepared[name] ??= this.#db.prepare(SQL[name]);
  }

  /**
   * Opens (creating if needed) the database at `path`, applies the pragmas and
   * brings the schema up to date.
   *
   * @throws {SqliteError} When SQLite refuses the file.
   * @throws {SessionBusyError} When another process kept it locked too long.
   */
  static async open(
    driver: SqliteDriver,
    path: string,
    options: SqliteEngineOptions,
  ): Promise<SqliteEngine> {
    const db = driver.open(path);
    try {
      db.exec("PRAGMA busy_timeout = 0");
      // Before the first read: in WAL mode this also keeps the WAL index in
      // heap memory, which is only safe because nobody else can open the file.
      if (options.exclusive) db.exec("PRAGMA locking_mode = EXCLUSIVE");
      // Everything that reads the file may meet another process's lock (a
      // rollback commit, a last-close checkpoint): retry it all.
      return await retryBusy(
        () => {
          // A page cache of 2 pages while the file is first read: SQLite
          // preallocates 20 pages (about 90 KiB, resident) at a cache's first
          // page unless it is that small; the real size applies from then on,
          // to pages allocated as they are read.
          db.exec("PRAGMA cache_size = 2");
          prepareFile(db, options);
          const engine = new SqliteEngine(db, path, options);
          db.exec(`PRAGMA cache_size = -${Math.floor(options.cacheSizeKiB)}`);
          return engine;
        },
        options.busyTimeoutMs,
        path,
      );
    } catch (error) {
      db.close();
      throw error;
    }
  }

  /** The database file's path. */
  get path(): string {
    return this.#path;
  }

  get(key: Uint8Array, now: number): MaybePromise<KvRow | undefined> {
    return this.#read(() => this.#point(key, now));
  }

  #point(key: Uint8Array, now: number): KvRow | undefined {
    const r = this.#get.get(key, now);
    return r === undefined ? undefined : [
      key,
      r[0] as Uint8Array,
      r[1] as number,
      r[2] as number,
      r[3] as number | null,
    ];
  }

  getMany(
    keys: Uint8Array[],
    now: number,
  ): MaybePromise<(KvRow | undefined)[]> {
    return this.#read(() => {
      this.#db.exec("BEGIN");
      try {
        return keys.map((key) => this.#point(key, now));
      } finally {
        this.#db.exec("COMMIT");
      }
    });
  }

  list(range: ReadRange, now: number): MaybePromise<KvRow[]> {
    const stmt = range.reverse ? this.#sql("listDesc") : this.#listAsc;
    return this.#read(() => {
      const rows = stmt.all(range.start, range.end, now, range.limit);
      for (const row of rows) {
        // [key length, key + value, enc, version] → [key, value, enc, version]
        const keyLength = row[0] as number;
        const bytes = row[1] as Uint8Array;
        row[0] = bytes.subarray(0, keyLength);
        row[1] = bytes.subarray(keyLength);
      }
      return rows as unknown as KvRow[];
    });
  }

  commit(plan: CommitPlan, now: number): MaybePromise<number | null> {
    return retryBusy(
      () => this.#commit(plan, now),
      this.#options.busyTimeoutMs,
      this.#path,
    );
  }

  dequeue(now: number, leaseMs: number): MaybePromise<QueuedMessage | undefined> {
    return this.#write(() => {
      const row = this.#sql("nextMessage").get(now);
      if (row === undefined) return undefined;
      this.#sql("claim").run(now + leaseMs, row[0]!);
      return {
        id: Number(row[0]),
        payload: row[1] as Uint8Array,
        backoffSchedule: JSON.parse(row[2] as string),
        keysIfUndelivered: (JSON.parse(row[3] as string) as number[][]).map((k) =>
          new Uint8Array(k)
        ),
      };
    });
  }

  nextDelivery(): MaybePromise<number | undefined> {
    return this.#read(() => {
      const at = this.#sql("nextReady").get()?.[0];
      return at === null || at === undefined ? undefined : Number(at);
    });
  }

  extendMessage(id: number, deadline: number): MaybePromise<void> {
    return this.#write(() => {
      this.#sql("claim").run(deadline, id);
    });
  }

  retryMessage(id: number, readyAt: number, backoffSchedule: number[]): MaybePromise<void> {
    return this.#write(() => {
      this.#sql("unclaim").run(readyAt, JSON.stringify(backoffSchedule), id);
    });
  }

  changeToken(): MaybePromise<string> {
    // data_version changes when another connection commits; the instance
    // number tells a reopened connection's counter from the old one's.
    return this.#read(() => `${this.#instance}:${this.#sql("dataVersion").get()![0]}`);
  }

  /** Deletes expired rows now. @returns How many were removed. */
  sweepExpired(now: number): MaybePromise<number> {
    this.#expiryMarkerMayExist = true;
    return this.#write(() => {
      const n = this.#sql("sweep").run(now);
      this.#nextExpiry = this.#readNextExpiry();
      return n;
    });
  }

  /**
   * Finalizes every statement and closes the connection. Leaves an
   * {@linkcode EXPIRY_MARKER} naming the next expiry time when keys will
   * expire, so cleanup can sweep them later without opening every session.
   */
  close(): void {
    const expires = this.#nextExpiry !== Infinity;
    try {
      if (expires || this.#expiryMarkerMayExist) {
        const marker = join(dirname(this.#path), EXPIRY_MARKER);
        if (expires) Deno.writeTextFileSync(marker, String(this.#nextExpiry));
        else Deno.removeSync(marker);
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        this.#db.close();
        throw error;
      }
    }
    this.#db.close();
  }

  #read<T>(work: () => T): MaybePromise<T> {
    return retryBusy(work, this.#options.busyTimeoutMs, this.#path);
  }

  /** Runs `work` in a write transaction, retrying while the file is locked. */
  #write<T>(work: () => T): MaybePromise<T> {
    return retryBusy(
      () => {
        this.#db.exec("BEGIN IMMEDIATE");
        try {
          const result = work();
          this.#db.exec("COMMIT");
          return result;
        } catch (error) {
          this.#rollback();
          throw error;
        }
      },
      this.#options.busyTimeoutMs,
      this.#path,
    );
  }

  #updateMarker(): void {
    this.#setMarker(Number(this.#sql("queueSize").get()![0]) > 0);
  }

  #setMarker(present: boolean): void {
    if (this.#markerPresent === present) return;
    const marker = join(dirname(this.#path), QUEUE_MARKER);
    try {
      if (present) Deno.writeFileSync(marker, new Uint8Array(0));
      else Deno.removeSync(marker);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    this.#markerPresent = present;
  }

  #readNextExpiry(): number {
    const min = this.#sql("minExpiry").get()?.[0];
    return typeof min === "number" ? min : Infinity;
  }

  #rollback(): void {
    try {
      this.#db.exec("ROLLBACK");
    } catch {
      // No transaction was open (BEGIN itself failed).
    }
  }

  #commit(plan: CommitPlan, now: number): number | null {
    const db = this.#db;
    db.exec("BEGIN IMMEDIATE");
    try {
      for (const check of plan.checks) {
        const row = this.#versionOf.get(check.key, now);
        const version = row === undefined ? null : Number(row[0]);
        if (version !== check.version) {
          db.exec("ROLLBACK");
          return null;
        }
      }
      // Removing a delivered message alone is bookkeeping, not a commit.
      const bump = plan.dequeued === undefined || plan.mutations.length > 0 ||
        plan.enqueues.length > 0;
      const stored = Number(this.#readMark.get()![0]);
      let version = stored === this.#mark ? this.#version : stored;
      let mark = stored;
      if (bump) {
        version += versionStep();
        if (version > stored) {
          mark = version + VERSION_RESERVE;
          this.#sql("writeMark").run(mark);
        }
      }
      let nextExpiry = this.#nextExpiry;
      for (const m of plan.mutations) {
        switch (m.type) {
          case "set": {
            let key = m.key;
            if (m.versionstampKey) key = withVersionstamp(key, version);
            const exp = m.expireIn === null ? null : now + m.expireIn;
            if (exp !== null && exp < nextExpiry) nextExpiry = exp;
            this.#put.run(key, m.value.bytes, m.value.encoding, version, exp);
            break;
          }
          case "delete":
            this.#sql("del").run(m.key);
            break;
          default: {
            const row = this.#sql("current").get(m.key, now);
            const current: EncodedValue | undefined = row === undefined ? undefined : {
              bytes: row[0] as Uint8Array,
              encoding: Number(row[1]) as ValueEncoding,
            };
            const next = applyNumeric(m.type, current, m.value);
            this.#put.run(m.key, next.bytes, next.encoding, version, null);
          }
        }
      }
      for (const e of plan.enqueues) {
        this.#sql("enqueue").run(
          now + e.delayMs,
          e.payload,
          JSON.stringify(e.backoffSchedule),
          JSON.stringify(e.keysIfUndelivered.map((k) => Array.from(k))),
        );
      }
      if (plan.dequeued !== undefined) this.#sql("ack").run(plan.dequeued);
      if (now >= nextExpiry) {
        this.#sql("sweep").run(now);
        nextExpiry = this.#readNextExpiry();
      }
      db.exec("COMMIT");
      this.#version = version;
      this.#mark = mark;
      this.#nextExpiry = nextExpiry;
      if (plan.enqueues.length > 0) this.#setMarker(true);
      else if (plan.dequeued !== undefined) this.#updateMarker();
      return version;
    } catch (error) {
      this.#rollback();
      throw error;
    }
  }
}

function prepareFile(db: SqliteConnection, options: SqliteEngineOptions): void {
  db.exec(
    options.wal
      // synchronous first: it also governs the syncs of the journal-mode switch.
      ? "PRAGMA synchronous = NORMAL; PRAGMA journal_mode = WAL"
      : "PRAGMA synchronous = FULL; PRAGMA journal_mode = DELETE",
  );
  const stmt = db.prepare("PRAGMA user_version");
  try {
    const current = Number(stmt.get()![0]);
    if (current === SCHEMA_VERSION) return;
    if (current > SCHEMA_VERSION) {
      throw new SqliteError(
        `Session schema version ${current} is newer than this sessionkv supports (${SCHEMA_VERSION})`,
        1,
      );
    }
  } finally {
    stmt.finalize();
  }
  db.exec("BEGIN IMMEDIATE");
  try {
    // Re-read under the write lock: another process may have migrated meanwhile.
    const again = db.prepare("PRAGMA user_version");
    const current = Number(again.get()![0]);
    again.finalize();
    for (let v = current; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]!);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    db.exec("COMMIT");
  } catch (error) {
    try {
      db.exec("ROLLBACK");
    } catch { /* BEGIN failed */ }
    throw error;
  }
}
