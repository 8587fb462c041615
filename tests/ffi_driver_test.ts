/**
 * The SQLite drivers: the FFI driver (`Deno.dlopen` on libsqlite3) and the
 * `node:sqlite` driver must keep the same promises — row shapes, NULL vs empty
 * BLOB, integers beyond 2^53, result codes — so the shared tests run on both.
 * FFI-only tests cover library loading, permissions and the version floor.
 */
import {
  deepStrictEqual,
  equal,
  match,
  notEqual,
  ok,
  rejects,
  strictEqual,
  throws,
} from "node:assert/strict";
import type { SqliteConnection, SqliteDriver, SqliteValue } from "../src/sqlite/driver.ts";
import { SqliteError } from "../src/sqlite/driver.ts";
import { checkSqliteVersion, loadFfiDriver } from "../src/sqlite/ffi_driver.ts";
import { nodeDriver } from "../src/sqlite/node_driver.ts";
import { testDrivers } from "./_drivers.ts";
import { withTempDir } from "./_helpers.ts";

const hasFfi = testDrivers.includes("ffi");
const drivers: SqliteDriver[] = testDrivers.map((d) => d === "ffi" ? loadFfiDriver() : nodeDriver);

/** Asserts `fn` throws a `SqliteError` and returns it. */
function sqliteError(fn: () => unknown): SqliteError {
  try {
    fn();
  } catch (error) {
    ok(error instanceof SqliteError, `expected SqliteError, got ${error}`);
    equal(error.name, "SqliteError");
    return error;
  }
  throw new Error("expected a SqliteError, nothing was thrown");
}

/** Opens `file` in `dir` on `driver`, closed by `using`. */
function openIn(
  driver: SqliteDriver,
  dir: string,
  file = "test.db",
): SqliteConnection & Disposable {
  const db = driver.open(`${dir}/${file}`);
  return Object.assign(db, { [Symbol.dispose]: () => db.close() });
}

function fdCount(): number {
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n;
}

// [bound value, value read back]
const ROUND_TRIPS: [SqliteValue, SqliteValue][] = [
  [null, null],
  [0, 0],
  [1, 1],
  [-1, -1],
  [2 ** 31, 2 ** 31],
  [-(2 ** 31) - 1, -(2 ** 31) - 1],
  [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  [Number.MIN_SAFE_INTEGER, Number.MIN_SAFE_INTEGER],
  [1.5, 1.5],
  [-0.25, -0.25],
  [1e300, 1e300],
  [2n ** 53n + 1n, 2n ** 53n + 1n],
  [-(2n ** 53n) - 1n, -(2n ** 53n) - 1n],
  [2n ** 63n - 1n, 2n ** 63n - 1n],
  [-(2n ** 63n), -(2n ** 63n)],
  [5n, 5], // safe integers always come back as numbers
  ["", ""],
  ["héllo € 😀", "héllo € 😀"],
  ["\uFEFFleading byte order mark", "\uFEFFleading byte order mark"],
  ["a".repeat(64), "a".repeat(64)],
  ["a".repeat(63) + "é", "a".repeat(63) + "é"],
  ["é".repeat(2000), "é".repeat(2000)],
  ["x".repeat(100_000), "x".repeat(100_000)],
  [new Uint8Array(0), new Uint8Array(0)],
  [new Uint8Array([0, 1, 255]), new Uint8Array([0, 1, 255])],
  [new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4), new Uint8Array([1, 2, 3])],
  [new Uint8Array(70_000).fill(7), new Uint8Array(70_000).fill(7)],
];

for (const driver of drivers) {
  const name = (what: string) => `[${driver.name}] ${what}`;

  Deno.test(name("SELECT ? returns every bound value type unchanged"), () => {
    const db = driver.open(":memory:");
    try {
      const select = db.prepare("SELECT ?");
      for (const [bound, expected] of ROUND_TRIPS) {
        deepStrictEqual(select.get(bound), [expected], `bound ${Deno.inspect(bound)}`);
      }
    } finally {
      db.close();
    }
  });

  Deno.test(name("a table stores and returns every value type, and so does one wide row"), () => {
    const db = driver.open(":memory:");
    try {
      db.exec("CREATE TABLE t (i INTEGER PRIMARY KEY, v)");
      const insert = db.prepare("INSERT INTO t (i, v) VALUES (?, ?)");
      for (const [i, [bound]] of ROUND_TRIPS.entries()) equal(insert.run(i, bound), 1);
      deepStrictEqual(
        db.prepare("SELECT i, v FROM t ORDER BY i").all(),
        ROUND_TRIPS.map(([, expected], i) => [i, expected]),
      );
      const row = ROUND_TRIPS.map(([bound]) => bound);
      const sql = `SELECT ${row.map(() => "?").join(", ")}`;
      deepStrictEqual(db.prepare(sql).get(...row), ROUND_TRIPS.map(([, expected]) => expected));
    } finally {
      db.close();
    }
  });

  Deno.test(name("an empty BLOB stays an empty BLOB, never NULL"), () => {
    const db = driver.open(":memory:");
    try {
      db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
      db.prepare("INSERT INTO t VALUES (1, ?), (2, x''), (3, NULL)").run(new Uint8Array(0));
      deepStrictEqual(db.prepare("SELECT v, typeof(v), v IS NULL FROM t ORDER BY k").all(), [
        [new Uint8Array(0), "blob", 0],
        [new Uint8Array(0), "blob", 0],
        [null, "null", 1],
      ]);
      deepStrictEqual(db.prepare("SELECT typeof(?), typeof(?)").get(new Uint8Array(0), ""), [
        "blob",
        "text",
      ]);
    } finally {
      db.close();
    }
  });

  Deno.test(name("returned BLOBs are fresh copies and bound ones are copied in"), () => {
    const db = driver.open(":memory:");
    try {
      db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
      const bytes = new Uint8Array([1, 2, 3]);
      db.prepare("INSERT INTO t VALUES (1, ?)").run(bytes);
      bytes[0] = 99;
      const select = db.prepare("SELECT v FROM t WHERE k = 1");
      const first = select.get()![0] as Uint8Array;
      deepStrictEqual(first, new Uint8Array([1, 2, 3]));
      first[1] = 42;
      deepStrictEqual(select.get(), [new Uint8Array([1, 2, 3])]);
      equal(first.byteOffset, 0);
      equal(first.buffer.byteLength, 3);
    } finally {
      db.close();
    }
  });

  Deno.test(name("get(), all() and run() report rows and changes"), () => {
    const db = driver.open(":memory:");
    try {
      db.exec(
        "CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID; INSERT INTO t VALUES ('a', 1)",
      );
      const upsert = db.prepare(
        "INSERT INTO t (k, n) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET n = n + excluded.n RETURNING n",
      );
      deepStrictEqual(upsert.get("a", 2), [3]);
      deepStrictEqual(upsert.all("b", 5), [[5]]);
      equal(upsert.run("c", 7), 1);
      equal(db.prepare("UPDATE t SET n = n * 2").run(), 3);
      equal(db.prepare("DELETE FROM t WHERE k = ?").run("zzz"), 0);
      strictEqual(db.prepare("SELECT * FROM t WHERE 0").get(), undefined);
      deepStrictEqual(db.prepare("SELECT * FROM t WHERE 0").all(), []);
      deepStrictEqual(db.prepare("SELECT k, n FROM t ORDER BY k").all(), [["a", 6], ["b", 10], [
        "c",
        14,
      ]]);
      // A statement is reusable after a partial read and with fewer parameters.
      const select = db.prepare("SELECT k FROM t WHERE k >= ? ORDER BY k");
      deepStrictEqual(select.get("a"), ["a"]);
      deepStrictEqual(select.get("b"), ["b"]);
      deepStrictEqual(select.all(), []); // an unbound parameter is NULL
    } finally {
      db.close();
    }
  });

  Deno.test(name("a constraint violation throws SqliteError with the extended code"), () => {
    const db = driver.open(":memory:");
    try {
      db.exec("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID");
      const insert = db.prepare("INSERT INTO t VALUES (?, ?)");
      insert.run(new Uint8Array([1]), new Uint8Array([2]));
      const dup = sqliteError(() => insert.run(new Uint8Array([1]), new Uint8Array([3])));
      equal(dup.code, 1555); // SQLITE_CONSTRAINT_PRIMARYKEY
      equal(dup.primaryCode, 19);
      match(dup.message, /UNIQUE constraint failed: t\.k/);
      const notNull = sqliteError(() => insert.run(new Uint8Array([2]), null));
      equal(notNull.code, 1299); // SQLITE_CONSTRAINT_NOTNULL
      // The statement was reset and its bindings cleared: it works again.
      equal(insert.run(new Uint8Array([3]), new Uint8Array([4])), 1);
      // exec() reports the primary code at least.
      const viaExec = sqliteError(() => db.exec("INSERT INTO t VALUES (x'01', x'02')"));
      equal(viaExec.primaryCode, 19);
    } finally {
      db.close();
    }
  });

  Deno.test(name("SQLITE_BUSY (5) while another connection holds BEGIN IMMEDIATE"), async () => {
    await withTempDir(async (dir) => {
      using a = openIn(driver, dir);
      using b = openIn(driver, dir);
      a.exec("PRAGMA journal_mode = WAL; CREATE TABLE t (k INTEGER PRIMARY KEY)");
      b.exec("PRAGMA busy_timeout = 0");
      const insert = b.prepare("INSERT INTO t VALUES (?)");
      a.exec("BEGIN IMMEDIATE");
      equal(sqliteError(() => b.exec("BEGIN IMMEDIATE")).code, 5);
      equal(sqliteError(() => insert.run(1)).code, 5);
      a.exec("COMMIT");
      equal(insert.run(1), 1);
      await Promise.resolve();
    });
  });

  Deno.test(name("a file that is not a database gives SQLITE_NOTADB (26)"), async () => {
    await withTempDir(async (dir) => {
      await Deno.writeTextFile(`${dir}/bad.db`, "not a database ".repeat(300));
      using db = openIn(driver, dir, "bad.db");
      equal(sqliteError(() => db.exec("SELECT * FROM sqlite_master")).primaryCode, 26);
      equal(sqliteError(() => db.prepare("SELECT * FROM sqlite_master")).primaryCode, 26);
    });
  });

  Deno.test(name("SQL and parameter errors carry their codes"), () => {
    const db = driver.open(":memory:");
    try {
      equal(sqliteError(() => db.prepare("SELEC 1")).code, 1);
      equal(sqliteError(() => db.exec("SELECT * FROM nowhere")).code, 1);
      equal(sqliteError(() => db.prepare("SELECT ?").get(1, 2)).code, 25); // SQLITE_RANGE
      throws(() => db.prepare("SELECT ?").get(true as unknown as SqliteValue), TypeError);
      throws(() => db.prepare("SELECT ?").get(Symbol("x") as unknown as SqliteValue), TypeError);
    } finally {
      db.close();
    }
  });

  Deno.test(name("create: false does not create a missing file (SQLITE_CANTOPEN)"), async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/missing.db`;
      equal(sqliteError(() => driver.open(path, { create: false })).primaryCode, 14);
      await rejects(Deno.stat(path), Deno.errors.NotFound);
      driver.open(path).close();
      driver.open(path, { create: false }).close();
    });
  });

  Deno.test(name("close() finalizes statements; close() and finalize() are idempotent"), () => {
    const db = driver.open(":memory:");
    const one = db.prepare("SELECT 1");
    const two = db.prepare("SELECT 2");
    deepStrictEqual(one.get(), [1]);
    two.finalize();
    two.finalize();
    equal(sqliteError(() => two.get()).code, 21);
    db.close();
    db.close();
    equal(sqliteError(() => one.get()).code, 21);
    one.finalize();
    equal(sqliteError(() => db.prepare("SELECT 1")).code, 21);
    equal(sqliteError(() => db.exec("SELECT 1")).code, 21);
  });

  Deno.test({
    name: name("closing a WAL database with prepared statements releases its fds"),
    ignore: Deno.build.os !== "linux",
    fn: async () => {
      await withTempDir(async (dir) => {
        driver.open(":memory:").close(); // warm up lazily opened files
        fdCount();
        const baseline = fdCount();
        for (let round = 0; round < 3; round++) {
          const db = driver.open(`${dir}/wal.db`);
          db.exec(
            "PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS t (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID",
          );
          const put = db.prepare("INSERT OR REPLACE INTO t VALUES (?, ?)");
          const get = db.prepare("SELECT v FROM t WHERE k = ?");
          db.prepare("SELECT count(*) FROM t");
          put.run(new Uint8Array([round]), new Uint8Array(100));
          deepStrictEqual(get.get(new Uint8Array([round])), [new Uint8Array(100)]);
          ok(fdCount() >= baseline + 3, "db, -wal and -shm are open");
          db.close();
          equal(fdCount(), baseline, `fds after close, round ${round}`);
        }
        await Promise.resolve();
      });
    },
  });
}

Deno.test({
  name: "[ffi] text containing NUL round-trips by length",
  ignore: !hasFfi,
  fn: () => {
    const db = loadFfiDriver().open(":memory:");
    try {
      deepStrictEqual(db.prepare("SELECT ?, length(CAST(? AS BLOB))").get("a\0b", "a\0b"), [
        "a\0b",
        3,
      ]);
      deepStrictEqual(db.prepare("SELECT 'x' || char(0) || 'y'").get(), ["x\0y"]);
    } finally {
      db.close();
    }
  },
});

Deno.test("[node] text containing NUL is refused rather than truncated", () => {
  const db = nodeDriver.open(":memory:");
  try {
    throws(() => db.prepare("SELECT ?").get("a\0b"), RangeError);
  } finally {
    db.close();
  }
});

Deno.test({
  name: "[ffi] a bigint beyond 64 bits throws RangeError",
  ignore: !hasFfi,
  fn: () => {
    const db = loadFfiDriver().open(":memory:");
    try {
      throws(() => db.prepare("SELECT ?").get(2n ** 63n), RangeError);
      throws(() => db.prepare("SELECT ?").get(-(2n ** 63n) - 1n), RangeError);
    } finally {
      db.close();
    }
  },
});

Deno.test({
  name: "[ffi] loadFfiDriver() caches one driver per library path",
  ignore: !hasFfi,
  fn: () => {
    const driver = loadFfiDriver();
    strictEqual(loadFfiDriver(), driver);
    strictEqual(loadFfiDriver({ path: driver.libraryPath }), driver);
    equal(driver.name, "ffi");
    match(driver.sqliteVersion, /^3\.\d+\.\d+$/);
  },
});

Deno.test({
  name: "[ffi] a bad library path gives an error naming the path and the fix",
  ignore: !hasFfi,
  fn: () => {
    const path = "/nonexistent/dir/libsqlite3.so.0";
    throws(() => loadFfiDriver({ path }), (e: unknown) => {
      ok(e instanceof Error);
      ok(e.message.includes(JSON.stringify(path)), e.message);
      match(e.message, /cannot open shared object file|No such file/);
      match(e.message, /Install libsqlite3/);
      match(e.message, /DENO_SQLITE_PATH/);
      match(e.message, /sqliteLibPath/);
      return true;
    });
    throws(() => loadFfiDriver({ path: "" }), TypeError);
  },
});

Deno.test("checkSqliteVersion() accepts 3.35.0 and later and rejects older", () => {
  checkSqliteVersion(3_035_000, "libsqlite3.so.0");
  checkSqliteVersion(3_053_002, "libsqlite3.so.0");
  checkSqliteVersion(4_000_000, "libsqlite3.so.0");
  throws(() => checkSqliteVersion(3_034_001, "/opt/old/libsqlite3.so"), {
    name: "Error",
    message: "SQLite 3.34.1 at /opt/old/libsqlite3.so is too old: sessionkv needs 3.35.0 or later",
  });
  throws(() => checkSqliteVersion(3_007_017, "x"), /SQLite 3\.7\.17 at x is too old/);
});

async function runChild(flags: string[], code: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "sessionkv-test-" });
  try {
    const script = `${dir}/child.ts`;
    const module = new URL("../src/sqlite/ffi_driver.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { loadFfiDriver } from ${JSON.stringify(module)};\n${code}\n`,
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-lock", ...flags, script],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    equal(output.code, 0, stderr);
    return new TextDecoder().decode(output.stdout).trim();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const REPORT = `try { loadFfiDriver(); console.log("loaded"); }
catch (e) { console.log(e.message); console.log("cause: " + e.cause?.name); }`;

Deno.test({
  name: "[ffi] without --allow-ffi the error says which permission to grant",
  ignore: !hasFfi,
  fn: async () => {
    const out = await runChild(["--allow-read", "--allow-env"], REPORT);
    match(out, /The "ffi" driver needs --allow-ffi/);
    match(out, /cause: NotCapable/);
  },
});

Deno.test({
  name: "[ffi] without --allow-env the error says which permission to grant",
  ignore: !hasFfi,
  fn: async () => {
    const out = await runChild(["--allow-ffi"], REPORT);
    match(out, /The "ffi" driver needs --allow-env=DENO_SQLITE_PATH/);
    match(out, /cause: NotCapable/);
    // An explicit path needs no environment access.
    const explicit = await runChild(
      ["--allow-ffi"],
      `console.log(loadFfiDriver({ path: ${JSON.stringify(loadFfiDriver().libraryPath)} }).name);`,
    );
    equal(explicit, "ffi");
  },
});

Deno.test({
  name: "[ffi] DENO_SQLITE_PATH selects the library",
  ignore: !hasFfi,
  fn: async () => {
    const out = await runChild(
      ["--allow-ffi", "--allow-env"],
      `Deno.env.set("DENO_SQLITE_PATH", "/nonexistent/libsqlite3.so");\n${REPORT}`,
    );
    match(out, /tried "\/nonexistent\/libsqlite3\.so": /);
    notEqual(out, "loaded");
  },
});
