/**
 * The SQLite drivers side by side on the store's hottest statements: an
 * autocommit upsert of a 16-byte key and a 100-byte value into a WITHOUT ROWID
 * table, and a point SELECT of that value. `node:sqlite` is the baseline.
 * Files use WAL with `synchronous = NORMAL`, so commits do not wait for fsync;
 * the `(memory)` groups run the same statements on `:memory:`, where no file
 * locking hides the drivers' own cost.
 *
 *   deno bench -A bench/driver_bench.ts
 */
import type { SqliteConnection, SqliteDriver, SqliteStatement } from "../src/sqlite/driver.ts";
import { loadFfiDriver } from "../src/sqlite/ffi_driver.ts";
import { nodeDriver } from "../src/sqlite/node_driver.ts";

const drivers: SqliteDriver[] = [nodeDriver];
try {
  drivers.push(loadFfiDriver());
} catch (error) {
  console.warn(`ffi driver not benchmarked: ${(error as Error).message}`);
}

const KEYS = 1_000;
const keys = Array.from({ length: KEYS }, (_, i) => {
  const key = crypto.getRandomValues(new Uint8Array(16));
  key[0] = i & 0xff;
  key[1] = i >> 8;
  return key;
});
const value = crypto.getRandomValues(new Uint8Array(100));

const root = await Deno.makeTempDir({ prefix: "sessionkv-bench-" });
const connections: SqliteConnection[] = [];
globalThis.addEventListener("unload", () => {
  for (const db of connections) db.close();
  Deno.removeSync(root, { recursive: true });
});

interface Statements {
  upsert: SqliteStatement;
  select: SqliteStatement;
  length: SqliteStatement;
}

function setUp(driver: SqliteDriver, path: string): Statements {
  const db = driver.open(path);
  connections.push(db);
  db.exec(`
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
  `);
  const upsert = db.prepare(
    "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
  );
  for (const key of keys) upsert.run(key, value);
  return {
    upsert,
    select: db.prepare("SELECT v FROM kv WHERE k = ?"),
    length: db.prepare("SELECT length(v) FROM kv WHERE k = ?"),
  };
}

for (const where of ["file", "memory"] as const) {
  const suffix = where === "file" ? "" : " (memory)";
  for (const driver of drivers) {
    const s = setUp(driver, where === "file" ? `${root}/${driver.name}.db` : ":memory:");
    const baseline = driver.name === "node";
    let i = 0;
    Deno.bench(`${driver.name}: upsert 16 B key, 100 B value${suffix}`, {
      group: `upsert${suffix}`,
      baseline,
    }, () => {
      s.upsert.run(keys[i++ % KEYS]!, value);
    });
    Deno.bench(`${driver.name}: point SELECT of the 100 B value${suffix}`, {
      group: `select${suffix}`,
      baseline,
    }, () => {
      s.select.get(keys[i++ % KEYS]!);
    });
    // The same lookup without copying a BLOB out.
    Deno.bench(`${driver.name}: point SELECT length(v)${suffix}`, {
      group: `select integer${suffix}`,
      baseline,
    }, () => {
      s.length.get(keys[i++ % KEYS]!);
    });
  }
}
