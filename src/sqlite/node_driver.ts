/**
 * The default driver: Deno's built-in `node:sqlite` module. No download, no
 * `--allow-ffi`; needs `--allow-read` and `--allow-write` on the store's root.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import {
  SQLITE_CANTOPEN,
  SQLITE_ERROR,
  type SqliteConnection,
  type SqliteDriver,
  SqliteError,
  type SqliteOpenOptions,
  type SqliteRow,
  type SqliteStatement,
  type SqliteValue,
} from "./driver.ts";

// Deno's node:sqlite reports failures as `Error` with code "ERR_SQLITE_ERROR"
// and SQLite's message; errors from prepare and step carry the extended result
// code as `errcode`, those from exec() and open do not. SQLite's messages for
// its primary codes are fixed strings (sqlite3ErrStr), so for those this table,
// the only place in the project that reads message text, recovers the code.
const MESSAGE_CODES: readonly [string, number][] = [
  ["database is locked", 5],
  ["database table is locked", 6],
  ["out of memory", 7],
  ["attempt to write a readonly database", 8],
  ["interrupted", 9],
  ["disk I/O error", 10],
  ["database disk image is malformed", 11],
  ["malformed database schema", 11],
  ["database or disk is full", 13],
  ["unable to open database file", 14],
  ["locking protocol", 15],
  ["database schema has changed", 17],
  ["string or blob too big", 18],
  ["constraint failed", 19],
  ["datatype mismatch", 20],
  ["bad parameter or other API misuse", 21],
  ["file is not a database", 26],
  ["access permission denied", 3],
];

function codeOf(message: string): number {
  for (const [text, code] of MESSAGE_CODES) {
    if (message.startsWith(text) || message.includes(text)) return code;
  }
  return SQLITE_ERROR;
}

function wrap(error: unknown): unknown {
  if (
    error instanceof Error && (error as { code?: unknown }).code === "ERR_SQLITE_ERROR"
  ) {
    const errcode = (error as { errcode?: unknown }).errcode;
    const code = typeof errcode === "number" && errcode > 0 ? errcode : codeOf(error.message);
    return new SqliteError(error.message, code, { cause: error });
  }
  return error;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

// Integers come back as bigint (without this, node:sqlite throws on reading
// one beyond 2^53 and rounds -2^63); safe ones become numbers again, as the
// FFI driver returns them.
function narrow(row: SqliteRow): SqliteRow {
  for (let i = 0; i < row.length; i++) {
    const value = row[i];
    if (typeof value === "bigint" && value <= MAX_SAFE && value >= -MAX_SAFE) {
      row[i] = Number(value);
    }
  }
  return row;
}

// node:sqlite binds and reads TEXT as NUL-terminated C strings, so "a\0b"
// would silently be stored as "a"; refuse it instead.
function checkParams(params: SqliteValue[]): void {
  for (let i = 0; i < params.length; i++) {
    const value = params[i];
    if (typeof value === "string" && value.includes("\0")) {
      throw new RangeError(
        `Text parameter ${i + 1} contains a NUL character, which node:sqlite truncates: ${
          JSON.stringify(value)
        }`,
      );
    }
  }
}

class NodeStatement implements SqliteStatement {
  #stmt: StatementSync | undefined;
  constructor(stmt: StatementSync) {
    // Positional rows avoid building an object per row; the method exists at
    // run time but is missing from Deno's bundled node:sqlite types.
    (stmt as StatementSync & { setReturnArrays(on: boolean): void })
      .setReturnArrays(true);
    stmt.setReadBigInts(true);
    this.#stmt = stmt;
  }
  #live(params: SqliteValue[]): StatementSync {
    if (this.#stmt === undefined) throw new SqliteError("Statement is finalized", 21);
    checkParams(params);
    return this.#stmt;
  }
  get(...params: SqliteValue[]): SqliteRow | undefined {
    try {
      const row = this.#live(params).get(...params) as SqliteRow | undefined;
      return row === undefined ? row : narrow(row);
    } catch (error) {
      throw wrap(error);
    }
  }
  all(...params: SqliteValue[]): SqliteRow[] {
    try {
      const rows = this.#live(params).all(...params) as unknown as SqliteRow[];
      for (const row of rows) narrow(row);
      return rows;
    } catch (error) {
      throw wrap(error);
    }
  }
  run(...params: SqliteValue[]): number {
    try {
      return Number(this.#live(params).run(...params).changes);
    } catch (error) {
      throw wrap(error);
    }
  }
  finalize(): void {
    this.#stmt = undefined;
  }
}

class NodeConnection implements SqliteConnection {
  #db: DatabaseSync | undefined;
  #statements = new Set<NodeStatement>();
  constructor(db: DatabaseSync) {
    this.#db = db;
  }
  #live(): DatabaseSync {
    if (this.#db === undefined) throw new SqliteError("Database is closed", 21);
    return this.#db;
  }
  exec(sql: string): void {
    try {
      this.#live().exec(sql);
    } catch (error) {
      throw wrap(error);
    }
  }
  prepare(sql: string): SqliteStatement {
    try {
      const stmt = new NodeStatement(this.#live().prepare(sql));
      this.#statements.add(stmt);
      return stmt;
    } catch (error) {
      throw wrap(error);
    }
  }
  close(): void {
    if (this.#db === undefined) return;
    for (const stmt of this.#statements) stmt.finalize();
    this.#statements.clear();
    const db = this.#db;
    this.#db = undefined;
    try {
      db.close();
    } catch (error) {
      throw wrap(error);
    }
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

let version: string | undefined;

/** The `node:sqlite` driver (Deno's built-in SQLite). */
export const nodeDriver: SqliteDriver = {
  name: "node",
  get sqliteVersion(): string {
    if (version === undefined) {
      const db = new DatabaseSync(":memory:");
      version = String(db.prepare("SELECT sqlite_version()").get()?.["sqlite_version()"]);
      db.close();
    }
    return version;
  },
  open(path: string, options?: SqliteOpenOptions): SqliteConnection {
    // node:sqlite always creates the file; honour `create: false` as
    // SQLITE_OPEN_CREATE would, with SQLite's own message.
    if (options?.create === false && path !== ":memory:" && !exists(path)) {
      throw new SqliteError(`unable to open database file: ${path}`, SQLITE_CANTOPEN);
    }
    try {
      return new NodeConnection(new DatabaseSync(path));
    } catch (error) {
      throw wrap(error);
    }
  },
};
