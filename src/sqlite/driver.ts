/**
 * The driver seam: the few SQLite operations the store needs, so that the
 * built-in `node:sqlite` module, the SQLite C library over FFI, or a user's own
 * binding can sit underneath the same store.
 *
 * @module
 */

/** A value SQLite can bind or return: NULL, INTEGER/REAL, TEXT or BLOB. */
export type SqliteValue = null | number | bigint | string | Uint8Array;

/** One row, as positional column values. */
export type SqliteRow = SqliteValue[];

/** A prepared statement. Parameters are positional (`?`). */
export interface SqliteStatement {
  /** Runs the statement and returns its first row, or `undefined` when there is none. */
  get(...params: SqliteValue[]): SqliteRow | undefined;
  /** Runs the statement and returns every row. */
  all(...params: SqliteValue[]): SqliteRow[];
  /** Runs the statement for its effect; returns the number of rows changed. */
  run(...params: SqliteValue[]): number;
  /** Releases the statement. Idempotent. */
  finalize(): void;
}

/** One open database connection. */
export interface SqliteConnection {
  /** Runs one or more SQL statements that return no rows. */
  exec(sql: string): void;
  /** Compiles one SQL statement. The connection finalizes it on close. */
  prepare(sql: string): SqliteStatement;
  /** Finalizes every statement and closes the connection. Idempotent. */
  close(): void;
}

/** Options for {@linkcode SqliteDriver.open}. */
export interface SqliteOpenOptions {
  /** Create the file if it does not exist. @default {true} */
  create?: boolean;
}

/**
 * A SQLite binding. Implementations throw {@linkcode SqliteError} with the
 * extended result code for every failure reported by SQLite.
 */
export interface SqliteDriver {
  /** A short name for logs and benchmarks, e.g. `"node"` or `"ffi"`. */
  readonly name: string;
  /** The linked SQLite library's version, e.g. `"3.53.2"`. */
  readonly sqliteVersion: string;
  /** Opens (or creates) a database file. */
  open(path: string, options?: SqliteOpenOptions): SqliteConnection;
}

/** Primary SQLite result codes the store reacts to. */
export const SQLITE_ERROR = 1;
/** Primary result code: internal malfunction. */
export const SQLITE_INTERNAL = 2;
/** Primary result code: access permission denied. */
export const SQLITE_PERM = 3;
/** Primary result code: the database file is locked. */
export const SQLITE_BUSY = 5;
/** Primary result code: a table in the database is locked. */
export const SQLITE_LOCKED = 6;
/** Primary result code: out of memory. */
export const SQLITE_NOMEM = 7;
/** Primary result code: attempt to write a read-only database. */
export const SQLITE_READONLY = 8;
/** Primary result code: disk I/O error. */
export const SQLITE_IOERR = 10;
/** Primary result code: the database disk image is malformed. */
export const SQLITE_CORRUPT = 11;
/** Primary result code: database or disk is full. */
export const SQLITE_FULL = 13;
/** Primary result code: unable to open the database file. */
export const SQLITE_CANTOPEN = 14;
/** Primary result code: constraint violation. */
export const SQLITE_CONSTRAINT = 19;
/** Primary result code: file opened that is not a database file. */
export const SQLITE_NOTADB = 26;

/**
 * An error reported by SQLite. `code` is the extended result code when the
 * binding provides it (the FFI driver does), else the primary code; compare
 * `primaryCode` against the `SQLITE_*` constants.
 *
 * @example Tell SQLite's errors apart by code
 * ```ts
 * import { nodeDriver, SqliteError } from "@sessionkv/core";
 * import { equal, ok } from "node:assert/strict";
 *
 * const db = nodeDriver.open(":memory:");
 * let caught: unknown;
 * try {
 *   db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY)");
 *   db.exec("INSERT INTO t VALUES (1)");
 *   db.exec("INSERT INTO t VALUES (1)");
 * } catch (error) {
 *   caught = error;
 * } finally {
 *   db.close();
 * }
 * ok(caught instanceof SqliteError);
 * equal(caught.primaryCode, 19); // SQLITE_CONSTRAINT
 * ```
 */
export class SqliteError extends Error {
  /** The (extended, where known) SQLite result code. */
  readonly code: number;
  /**
   * Wraps a failure reported by SQLite.
   *
   * @param message SQLite's error message.
   * @param code The SQLite result code.
   * @param options The cause, if any.
   */
  constructor(message: string, code: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SqliteError";
    this.code = code;
  }
  /** The primary result code (`code & 0xff`). */
  get primaryCode(): number {
    return this.code & 0xff;
  }
}
