/**
 * The FFI driver: the system's SQLite C library through `Deno.dlopen`. Faster
 * than `node:sqlite` on small statements and gives extended result codes;
 * needs `--allow-ffi` and a `libsqlite3` (3.35.0 or later) on the machine.
 *
 * @module
 */
import { type SqliteSymbols, symbols } from "./_ffi_symbols.ts";
import {
  type SqliteConnection,
  type SqliteDriver,
  SqliteError,
  type SqliteOpenOptions,
  type SqliteRow,
  type SqliteStatement,
  type SqliteValue,
} from "./driver.ts";

/** Options for {@linkcode loadFfiDriver}. */
export interface LoadFfiDriverOptions {
  /**
   * The SQLite shared library to load: a file path or a name the platform's
   * loader resolves (e.g. `"libsqlite3.so.0"`).
   *
   * @default {the `DENO_SQLITE_PATH` environment variable, else the platform's usual names}
   */
  path?: string;
}

/** A {@linkcode SqliteDriver} backed by a SQLite library loaded over FFI. */
export interface FfiSqliteDriver extends SqliteDriver {
  /** `"ffi"`. */
  readonly name: "ffi";
  /** The path or name the library was loaded from, e.g. `"libsqlite3.so.0"`. */
  readonly libraryPath: string;
  /**
   * Opens (or creates) a database file; the connection is `Disposable`.
   *
   * @param path The database file, or `":memory:"`.
   * @param options Whether to create a missing file.
   * @returns The open connection.
   * @throws {SqliteError} When SQLite cannot open the file (e.g. `SQLITE_CANTOPEN`, 14).
   */
  open(path: string, options?: SqliteOpenOptions): SqliteConnection & Disposable;
}

/** The oldest SQLite the store runs on (RETURNING and UPSERT), as `sqlite3_libversion_number()`. */
const MIN_VERSION_NUMBER = 3_035_000;

// Result codes and flags from sqlite3.h.
const SQLITE_OK = 0;
const SQLITE_MISUSE = 21;
const SQLITE_ROW = 100;
const SQLITE_DONE = 101;
const SQLITE_INTEGER = 1;
const SQLITE_FLOAT = 2;
const SQLITE_TEXT = 3;
const SQLITE_BLOB = 4;
const SQLITE_OPEN_READWRITE = 0x0000_0002;
const SQLITE_OPEN_CREATE = 0x0000_0004;
const SQLITE_OPEN_NOMUTEX = 0x0000_8000;
const SQLITE_OPEN_EXRESCODE = 0x0200_0000;
const SQLITE_PREPARE_PERSISTENT = 0x01;

/**
 * `SQLITE_TRANSIENT`, `(void(*)(void*))-1`: SQLite copies the bound bytes
 * during the call, so JS memory (which the GC may move) is never kept. Created
 * once a library loads, as making a pointer needs `--allow-ffi`.
 */
let SQLITE_TRANSIENT: Deno.PointerObject;

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const MIN_I64 = -(2n ** 63n);
const MAX_I64 = 2n ** 63n - 1n;
const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;

const encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is data, not a byte order mark to strip.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

// Per-process scratch memory, safe to share because every use is synchronous:
// an out-pointer slot for open/prepare, a byte for binding empty blobs (a
// non-NULL pointer with length 0 binds an empty BLOB, not NULL), and a growable
// buffer for encoding bound text and decoding returned text.
const outPointer = new BigUint64Array(1);
const emptyBytes = new Uint8Array(1);
const SCRATCH_LIMIT = 64 * 1024;
let scratch = new Uint8Array(1024);

/** `scratch` if it holds `size` bytes (growing it up to the limit), else a one-off buffer. */
function scratchOf(size: number): Uint8Array {
  if (size <= scratch.length) return scratch;
  if (size > SCRATCH_LIMIT) return new Uint8Array(size);
  let length = scratch.length;
  while (length < size) length *= 2;
  scratch = new Uint8Array(length);
  return scratch;
}

/** The buffer {@linkcode encodeText} wrote to: `scratch` or a larger one-off buffer. */
let encoded: Uint8Array = scratch;

/** Encodes `value` as UTF-8 into `encoded`; returns the byte length. */
function encodeText(value: string): number {
  const length = value.length;
  if (length <= 64) {
    // Short ASCII strings (ids, names) are copied faster by hand than by encodeInto.
    const buffer = encoded = scratch;
    let i = 0;
    for (; i < length; i++) {
      const code = value.charCodeAt(i);
      if (code > 0x7f) break;
      buffer[i] = code;
    }
    if (i === length) return length;
  }
  // UTF-8 needs at most 3 bytes per UTF-16 code unit.
  encoded = scratchOf(length * 3);
  return encoder.encodeInto(value, encoded).written;
}

let memcpy: SqliteSymbols["memcpy"] = null;

/** Copies `length` bytes at `pointer` into `bytes`, which holds exactly `length` bytes. */
function copyOut(pointer: Deno.PointerObject, bytes: Uint8Array, length: number): void {
  if (memcpy === null) Deno.UnsafePointerView.copyInto(pointer, bytes);
  else memcpy(bytes, pointer, BigInt(length));
}

/** Reads `length` bytes of UTF-8 at `pointer`; TEXT may contain NUL characters. */
function decodeText(pointer: Deno.PointerObject, length: number): string {
  // Fast path: the NUL-terminated read is complete and right when it yields
  // one character per byte (ASCII; invalid bytes decode to U+FFFD either way).
  if (length <= 1024) {
    const text = Deno.UnsafePointerView.getCString(pointer);
    if (text.length === length) return text;
  }
  const bytes = scratchOf(length).subarray(0, length);
  copyOut(pointer, bytes, length);
  return decoder.decode(bytes);
}

function cString(value: string, what: string): Uint8Array<ArrayBuffer> {
  if (value.includes("\0")) {
    throw new TypeError(`${what} contains a NUL character: ${JSON.stringify(value)}`);
  }
  return encoder.encode(value + "\0");
}

function readOutPointer(): Deno.PointerValue {
  return Deno.UnsafePointer.create(outPointer[0]!);
}

function versionString(versionNumber: number): string {
  const major = Math.trunc(versionNumber / 1_000_000);
  const minor = Math.trunc(versionNumber / 1_000) % 1_000;
  return `${major}.${minor}.${versionNumber % 1_000}`;
}

/**
 * Checks that a SQLite library is recent enough for sessionkv: 3.35.0 or
 * later, for `RETURNING` and `UPSERT`.
 *
 * @param versionNumber The library's `sqlite3_libversion_number()`, e.g. `3040001` for 3.40.1.
 * @param path Where the library was loaded from, for the error message.
 * @throws {Error} When the version is older than 3.35.0.
 *
 * @example Rejecting an old library
 * ```ts
 * import { checkSqliteVersion } from "@sessionkv/core";
 * import { throws } from "node:assert/strict";
 *
 * checkSqliteVersion(3_045_001, "libsqlite3.so.0");
 * throws(() => checkSqliteVersion(3_031_001, "/opt/old/libsqlite3.so"), /SQLite 3\.31\.1/);
 * ```
 */
export function checkSqliteVersion(versionNumber: number, path: string): void {
  if (versionNumber < MIN_VERSION_NUMBER) {
    throw new Error(
      `SQLite ${versionString(versionNumber)} at ${path} is too old: sessionkv needs ${
        versionString(MIN_VERSION_NUMBER)
      } or later`,
    );
  }
}

function isPermissionError(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}

function defaultLibraryNames(): string[] {
  switch (Deno.build.os) {
    case "darwin":
      return ["libsqlite3.dylib", "/usr/lib/libsqlite3.dylib"];
    case "windows":
      return ["winsqlite3.dll", "sqlite3.dll"];
    default:
      return ["libsqlite3.so.0", "libsqlite3.so"];
  }
}

function libraryCandidates(options: LoadFfiDriverOptions | undefined): string[] {
  if (options?.path !== undefined) {
    if (typeof options.path !== "string" || options.path === "") {
      throw new TypeError(`Invalid SQLite library path: ${JSON.stringify(options.path)}`);
    }
    return [options.path];
  }
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get("DENO_SQLITE_PATH");
  } catch (error) {
    if (!isPermissionError(error)) throw error;
    throw new Error(
      'The "ffi" driver needs --allow-env=DENO_SQLITE_PATH to find the SQLite library, ' +
        "or pass its path explicitly (`sqliteLibPath`)",
      { cause: error },
    );
  }
  return fromEnv ? [fromEnv] : defaultLibraryNames();
}

const loaded = new Map<string, FfiSqliteDriver>();

/**
 * Loads the SQLite C library over FFI and returns a driver for it. The first
 * library that loads wins; one driver is cached per library path, so calling
 * this again is cheap.
 *
 * Lookup order: `options.path`, else the `DENO_SQLITE_PATH` environment
 * variable, else the platform's usual names (Linux `libsqlite3.so.0`,
 * `libsqlite3.so`; macOS `libsqlite3.dylib`, `/usr/lib/libsqlite3.dylib`;
 * Windows `winsqlite3.dll`, `sqlite3.dll`).
 *
 * Permissions: `--allow-ffi`; `--allow-env=DENO_SQLITE_PATH` unless
 * `options.path` is given; opening databases then needs `--allow-read` and
 * `--allow-write` on their files (Deno does not check those for FFI, but the
 * store does its own file handling).
 *
 * @param options Where to find the library.
 * @returns The driver, named `"ffi"`.
 * @throws {TypeError} When `options.path` is not a non-empty string.
 * @throws {Error} When `--allow-ffi` or the environment read is not granted
 * (the permission error is the `cause`), when no candidate library loads (the
 * message names every path tried and why it failed), or when the library is
 * older than SQLite 3.35.0.
 *
 * @example Opening a database through the FFI driver
 * ```ts
 * import { loadFfiDriver } from "@sessionkv/core";
 * import { deepEqual } from "node:assert/strict";
 *
 * const driver = loadFfiDriver();
 * using db = driver.open(":memory:");
 * db.exec("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID");
 * const put = db.prepare("INSERT INTO t (k, v) VALUES (?, ?)");
 * put.run("a", new Uint8Array([1, 2, 3]));
 * deepEqual(db.prepare("SELECT k, v FROM t").all(), [["a", new Uint8Array([1, 2, 3])]]);
 * ```
 */
export function loadFfiDriver(options?: LoadFfiDriverOptions): FfiSqliteDriver {
  const candidates = libraryCandidates(options);
  const failures: string[] = [];
  let permissionError: unknown;
  for (const path of candidates) {
    const cached = loaded.get(path);
    if (cached !== undefined) return cached;
    let library: Deno.DynamicLibrary<typeof symbols>;
    try {
      library = Deno.dlopen(path, symbols);
    } catch (error) {
      if (isPermissionError(error)) permissionError ??= error;
      failures.push(
        `${JSON.stringify(path)}: ${error instanceof Error ? error.message : String(error)}`,
      );
      continue;
    }
    try {
      checkSqliteVersion(library.symbols.sqlite3_libversion_number(), path);
    } catch (error) {
      library.close();
      throw error;
    }
    const driver = new FfiDriver(library.symbols, path);
    loaded.set(path, driver);
    return driver;
  }
  if (permissionError !== undefined) {
    throw new Error(
      `The "ffi" driver needs --allow-ffi to load the SQLite library (tried ${
        candidates.map((c) => JSON.stringify(c)).join(", ")
      })`,
      { cause: permissionError },
    );
  }
  throw new Error(
    `Could not load the SQLite library for the "ffi" driver; tried ${failures.join("; ")}. ` +
      "Install libsqlite3 (3.35.0 or later) or set DENO_SQLITE_PATH / `sqliteLibPath` to its path",
  );
}

class FfiDriver implements FfiSqliteDriver {
  readonly name = "ffi" as const;
  readonly libraryPath: string;
  readonly sqliteVersion: string;
  readonly #lib: SqliteSymbols;

  constructor(lib: SqliteSymbols, path: string) {
    this.#lib = lib;
    this.libraryPath = path;
    this.sqliteVersion = Deno.UnsafePointerView.getCString(lib.sqlite3_libversion()!);
    SQLITE_TRANSIENT ??= Deno.UnsafePointer.create(0xffff_ffff_ffff_ffffn)!;
    memcpy ??= lib.memcpy;
  }

  open(path: string, options?: SqliteOpenOptions): SqliteConnection & Disposable {
    if (typeof path !== "string") {
      throw new TypeError(`Database path must be a string: ${JSON.stringify(path)}`);
    }
    const lib = this.#lib;
    const flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE |
      (options?.create === false ? 0 : SQLITE_OPEN_CREATE);
    const rc = lib.sqlite3_open_v2(cString(path, "Database path"), outPointer, flags, null);
    const db = readOutPointer();
    if (rc !== SQLITE_OK || db === null) {
      const message = db === null ? errstr(lib, rc) : errmsg(lib, db);
      if (db !== null) lib.sqlite3_close_v2(db);
      throw new SqliteError(`${message}: ${JSON.stringify(path)}`, rc);
    }
    lib.sqlite3_extended_result_codes(db, 1);
    // Deterministic: SQLITE_BUSY at once, the store retries asynchronously.
    lib.sqlite3_busy_timeout(db, 0);
    const connection = new FfiConnection(lib, db);
    try {
      // As node:sqlite does by default, so both drivers behave the same.
      connection.exec("PRAGMA foreign_keys = ON");
    } catch (error) {
      connection.close();
      throw error;
    }
    return connection;
  }
}

function errstr(lib: SqliteSymbols, rc: number): string {
  const text = lib.sqlite3_errstr(rc);
  return text === null ? `SQLite error ${rc}` : Deno.UnsafePointerView.getCString(text);
}

function errmsg(lib: SqliteSymbols, db: Deno.PointerObject): string {
  const text = lib.sqlite3_errmsg(db);
  return text === null
    ? errstr(lib, lib.sqlite3_extended_errcode(db))
    : Deno.UnsafePointerView.getCString(text);
}

class FfiConnection implements SqliteConnection, Disposable {
  readonly #lib: SqliteSymbols;
  #db: Deno.PointerObject | null;
  readonly #statements = new Set<FfiStatement>();

  constructor(lib: SqliteSymbols, db: Deno.PointerObject) {
    this.#lib = lib;
    this.#db = db;
  }

  #live(): Deno.PointerObject {
    if (this.#db === null) throw new SqliteError("Database is closed", SQLITE_MISUSE);
    return this.#db;
  }

  exec(sql: string): void {
    const db = this.#live();
    const rc = this.#lib.sqlite3_exec(db, cString(sql, "SQL"), null, null, null);
    if (rc !== SQLITE_OK) throw new SqliteError(errmsg(this.#lib, db), rc);
  }

  prepare(sql: string): SqliteStatement {
    const db = this.#live();
    const bytes = cString(sql, "SQL");
    const rc = this.#lib.sqlite3_prepare_v3(
      db,
      bytes,
      bytes.length - 1,
      SQLITE_PREPARE_PERSISTENT,
      outPointer,
      null,
    );
    if (rc !== SQLITE_OK) throw new SqliteError(errmsg(this.#lib, db), rc);
    const stmt = readOutPointer();
    if (stmt === null) {
      throw new SqliteError(`SQL contains no statement: ${JSON.stringify(sql)}`, SQLITE_MISUSE);
    }
    const statement = new FfiStatement(this.#lib, db, stmt, this.#statements);
    this.#statements.add(statement);
    return statement;
  }

  close(): void {
    const db = this.#db;
    if (db === null) return;
    this.#db = null;
    for (const statement of this.#statements) statement.finalize();
    this.#statements.clear();
    const rc = this.#lib.sqlite3_close_v2(db);
    if (rc !== SQLITE_OK) throw new SqliteError(errstr(this.#lib, rc), rc);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

class FfiStatement implements SqliteStatement {
  readonly #lib: SqliteSymbols;
  readonly #db: Deno.PointerObject;
  #stmt: Deno.PointerObject | null;
  readonly #owner: Set<FfiStatement>;

  constructor(
    lib: SqliteSymbols,
    db: Deno.PointerObject,
    stmt: Deno.PointerObject,
    owner: Set<FfiStatement>,
  ) {
    this.#lib = lib;
    this.#db = db;
    this.#stmt = stmt;
    this.#owner = owner;
  }

  get(...params: SqliteValue[]): SqliteRow | undefined {
    const stmt = this.#bind(params);
    const lib = this.#lib;
    const rc = lib.sqlite3_step(stmt);
    if (rc === SQLITE_ROW) {
      try {
        return this.#row(stmt, lib.sqlite3_column_count(stmt));
      } finally {
        lib.sqlite3_reset(stmt);
        lib.sqlite3_clear_bindings(stmt);
      }
    }
    this.#finish(stmt, rc);
    return undefined;
  }

  all(...params: SqliteValue[]): SqliteRow[] {
    const stmt = this.#bind(params);
    const rows: SqliteRow[] = [];
    // Read once per run, after the first step (which may re-prepare the statement).
    let columns = -1;
    let rc: number;
    try {
      while ((rc = this.#lib.sqlite3_step(stmt)) === SQLITE_ROW) {
        if (columns < 0) columns = this.#lib.sqlite3_column_count(stmt);
        rows.push(this.#row(stmt, columns));
      }
    } catch (error) {
      this.#lib.sqlite3_reset(stmt);
      this.#lib.sqlite3_clear_bindings(stmt);
      throw error;
    }
    this.#finish(stmt, rc);
    return rows;
  }

  run(...params: SqliteValue[]): number {
    const stmt = this.#bind(params);
    let rc: number;
    while ((rc = this.#lib.sqlite3_step(stmt)) === SQLITE_ROW);
    this.#finish(stmt, rc);
    return this.#lib.sqlite3_changes(this.#db);
  }

  finalize(): void {
    const stmt = this.#stmt;
    if (stmt === null) return;
    this.#stmt = null;
    this.#owner.delete(this);
    // Returns the last step's error, already reported by get/all/run.
    this.#lib.sqlite3_finalize(stmt);
  }

  /** Resets the statement after its last step; throws if that step failed. */
  #finish(stmt: Deno.PointerObject, rc: number): void {
    const lib = this.#lib;
    if (rc === SQLITE_DONE) {
      lib.sqlite3_reset(stmt);
      lib.sqlite3_clear_bindings(stmt);
      return;
    }
    const error = new SqliteError(errmsg(lib, this.#db), rc);
    lib.sqlite3_reset(stmt);
    lib.sqlite3_clear_bindings(stmt);
    throw error;
  }

  #bind(params: SqliteValue[]): Deno.PointerObject {
    const stmt = this.#stmt;
    if (stmt === null) throw new SqliteError("Statement is finalized", SQLITE_MISUSE);
    const lib = this.#lib;
    for (let i = 0; i < params.length; i++) {
      const value = params[i];
      const index = i + 1;
      let rc: number;
      if (value === null || value === undefined) {
        rc = lib.sqlite3_bind_null(stmt, index);
      } else if (typeof value === "number") {
        if (Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX) {
          rc = lib.sqlite3_bind_int(stmt, index, value);
        } else if (Number.isSafeInteger(value)) {
          rc = lib.sqlite3_bind_int64(stmt, index, BigInt(value));
        } else {
          rc = lib.sqlite3_bind_double(stmt, index, value);
        }
      } else if (typeof value === "string") {
        const length = encodeText(value);
        rc = lib.sqlite3_bind_text(stmt, index, encoded, length, SQLITE_TRANSIENT);
      } else if (value instanceof Uint8Array) {
        rc = value.length === 0
          ? lib.sqlite3_bind_blob(stmt, index, emptyBytes, 0, SQLITE_TRANSIENT)
          : lib.sqlite3_bind_blob(stmt, index, value, value.length, SQLITE_TRANSIENT);
      } else if (typeof value === "bigint") {
        if (value < MIN_I64 || value > MAX_I64) {
          lib.sqlite3_clear_bindings(stmt);
          throw new RangeError(`Parameter ${index} is out of the 64-bit integer range: ${value}`);
        }
        rc = lib.sqlite3_bind_int64(stmt, index, value);
      } else {
        lib.sqlite3_clear_bindings(stmt);
        throw new TypeError(
          `Parameter ${index} cannot be bound to SQLite: unsupported type "${typeof value}"`,
        );
      }
      if (rc !== SQLITE_OK) {
        const error = new SqliteError(errmsg(lib, this.#db), rc);
        lib.sqlite3_clear_bindings(stmt);
        throw error;
      }
    }
    return stmt;
  }

  #row(stmt: Deno.PointerObject, count: number): SqliteRow {
    const lib = this.#lib;
    const row: SqliteRow = [];
    for (let i = 0; i < count; i++) {
      switch (lib.sqlite3_column_type(stmt, i)) {
        case SQLITE_INTEGER: {
          // The double is exact while the integer is safe, and avoids a bigint.
          const value = lib.sqlite3_column_double(stmt, i);
          row.push(
            value >= -MAX_SAFE && value <= MAX_SAFE ? value : lib.sqlite3_column_int64(stmt, i),
          );
          break;
        }
        case SQLITE_FLOAT:
          row.push(lib.sqlite3_column_double(stmt, i));
          break;
        case SQLITE_TEXT: {
          const pointer = lib.sqlite3_column_text(stmt, i);
          const length = lib.sqlite3_column_bytes(stmt, i);
          row.push(pointer === null || length === 0 ? "" : decodeText(pointer, length));
          break;
        }
        case SQLITE_BLOB: {
          const pointer = lib.sqlite3_column_blob(stmt, i);
          const length = lib.sqlite3_column_bytes(stmt, i);
          const bytes = new Uint8Array(length);
          if (pointer !== null && length > 0) copyOut(pointer, bytes, length);
          row.push(bytes);
          break;
        }
        default:
          row.push(null);
      }
    }
    return row;
  }
}
