/**
 * The SQLite C functions the FFI driver calls, typed for `Deno.dlopen`.
 *
 * None is `nonblocking`: every call is synchronous by design, and the store
 * handles `SQLITE_BUSY` asynchronously itself. Parameter choices follow the
 * fast paths of Deno's FFI: `"buffer"` for memory passed in from JS,
 * `"pointer"` for SQLite handles, `"i32"`/`"f64"` where the C type allows, and
 * `"i64"` only where a 64-bit integer is unavoidable (callers pass `bigint`).
 *
 * @module
 */

/** The symbol table passed to `Deno.dlopen`. */
export const symbols = {
  sqlite3_libversion: {
    parameters: [],
    result: "pointer", // const char *
  },
  sqlite3_libversion_number: {
    parameters: [],
    result: "i32",
  },
  sqlite3_open_v2: {
    parameters: [
      "buffer", // const char *filename (NUL-terminated UTF-8)
      "buffer", // sqlite3 **ppDb (8-byte out buffer)
      "i32", // int flags
      "pointer", // const char *zVfs
    ],
    result: "i32",
  },
  sqlite3_close_v2: {
    parameters: ["pointer"], // sqlite3 *db
    result: "i32",
  },
  sqlite3_extended_result_codes: {
    parameters: ["pointer", "i32"], // sqlite3 *db, int onoff
    result: "i32",
  },
  sqlite3_busy_timeout: {
    parameters: ["pointer", "i32"], // sqlite3 *db, int ms
    result: "i32",
  },
  sqlite3_exec: {
    parameters: [
      "pointer", // sqlite3 *db
      "buffer", // const char *sql (NUL-terminated UTF-8)
      "pointer", // int (*callback)(void*, int, char**, char**)
      "pointer", // void *arg
      "pointer", // char **errmsg
    ],
    result: "i32",
  },
  sqlite3_prepare_v3: {
    parameters: [
      "pointer", // sqlite3 *db
      "buffer", // const char *zSql
      "i32", // int nByte
      "u32", // unsigned int prepFlags
      "buffer", // sqlite3_stmt **ppStmt (8-byte out buffer)
      "pointer", // const char **pzTail
    ],
    result: "i32",
  },
  sqlite3_errmsg: {
    parameters: ["pointer"], // sqlite3 *db
    result: "pointer", // const char *
  },
  sqlite3_errstr: {
    parameters: ["i32"], // int rc
    result: "pointer", // const char *
  },
  sqlite3_extended_errcode: {
    parameters: ["pointer"], // sqlite3 *db
    result: "i32",
  },
  sqlite3_changes: {
    parameters: ["pointer"], // sqlite3 *db
    result: "i32",
  },
  sqlite3_bind_null: {
    parameters: ["pointer", "i32"], // sqlite3_stmt *, int index
    result: "i32",
  },
  sqlite3_bind_int: {
    parameters: ["pointer", "i32", "i32"], // sqlite3_stmt *, int index, int value
    result: "i32",
  },
  sqlite3_bind_int64: {
    parameters: ["pointer", "i32", "i64"], // sqlite3_stmt *, int index, sqlite3_int64 value
    result: "i32",
  },
  sqlite3_bind_double: {
    parameters: ["pointer", "i32", "f64"], // sqlite3_stmt *, int index, double value
    result: "i32",
  },
  sqlite3_bind_text: {
    parameters: [
      "pointer", // sqlite3_stmt *
      "i32", // int index
      "buffer", // const char *value (UTF-8, not NUL-terminated)
      "i32", // int nBytes
      "pointer", // void (*destructor)(void *): SQLITE_STATIC or SQLITE_TRANSIENT
    ],
    result: "i32",
  },
  sqlite3_bind_blob: {
    parameters: [
      "pointer", // sqlite3_stmt *
      "i32", // int index
      "buffer", // const void *value
      "i32", // int nBytes
      "pointer", // void (*destructor)(void *): SQLITE_STATIC or SQLITE_TRANSIENT
    ],
    result: "i32",
  },
  sqlite3_step: {
    parameters: ["pointer"], // sqlite3_stmt *
    result: "i32",
  },
  sqlite3_column_count: {
    parameters: ["pointer"], // sqlite3_stmt *
    result: "i32",
  },
  sqlite3_column_type: {
    parameters: ["pointer", "i32"], // sqlite3_stmt *, int column
    result: "i32",
  },
  sqlite3_column_int64: {
    parameters: ["pointer", "i32"], // sqlite3_stmt *, int column
    result: "i64",
  },
  sqlite3_column_double: {
    parameters: ["pointer", "i32"], // sqlite3_stmt *, int column
    result: "f64",
  },
  sqlite3_column_text: {
    parameters: ["pointer", "i32"], // sqlite3_stmt *, int column
    result: "pointer", // const unsigned char *
  },
  sqlite3_column_blob: {
    parameters: ["pointer", "i32"], // sqlite3_stmt *, int column
    result: "pointer", // const void *
  },
  sqlite3_column_bytes: {
    parameters: ["pointer", "i32"], // sqlite3_stmt *, int column
    result: "i32",
  },
  sqlite3_reset: {
    parameters: ["pointer"], // sqlite3_stmt *
    result: "i32",
  },
  sqlite3_clear_bindings: {
    parameters: ["pointer"], // sqlite3_stmt *
    result: "i32",
  },
  sqlite3_finalize: {
    parameters: ["pointer"], // sqlite3_stmt *
    result: "i32",
  },
  // Not SQLite: the C library's memcpy, found through libsqlite3's own
  // dependencies (Linux, macOS). Copies a column's bytes into a JS buffer about
  // 100 ns faster than Deno.UnsafePointerView.copyInto. Optional: where the
  // loader does not search dependencies (Windows) the driver uses copyInto.
  memcpy: {
    parameters: [
      "buffer", // void *dest
      "pointer", // const void *src
      "usize", // size_t n
    ],
    result: "void", // the returned dest is not needed
    optional: true,
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded functions, as `Deno.dlopen` returns them. */
export type SqliteSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];
