/**
 * SessionKv against real Deno KV on a file and raw `node:sqlite` prepared
 * statements, in one run. Each group's baseline is Deno KV, so deno bench
 * prints "N× faster than Deno KV"; `deno task bench:compare` turns the same
 * numbers into ratios against raw SQLite too.
 *
 * Run: `deno task bench` (needs --allow-all --unstable-kv).
 */
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { SessionStore } from "../mod.ts";
import { encodeKey } from "../src/codec/key_codec.ts";
import { encodeValue } from "../src/codec/value_codec.ts";
import { testDrivers } from "../tests/_drivers.ts";

const dir = await Deno.makeTempDir({ prefix: "sessionkv-bench-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const KEYS = 1000;
const value = { role: "user", text: "hello, how do I keep state per conversation?", n: 1 };
const keyOf = (i: number) => ["messages", i % KEYS] as const;

// Real Deno KV on a file.
const denoKv = await Deno.openKv(join(dir, "denokv.sqlite3"));

// Raw node:sqlite: the same table shape, prepared statements, autocommit.
const raw = new DatabaseSync(join(dir, "raw.sqlite3"));
raw.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
  CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID`);
const rawPut = raw.prepare("INSERT OR REPLACE INTO kv (k, v, version) VALUES (?, ?, ?)");
const rawGet = raw.prepare("SELECT v, version FROM kv WHERE k = ?");
const rawList = raw.prepare(
  "SELECT k, v, version FROM kv WHERE k >= ? AND k < ? ORDER BY k LIMIT ?",
);
const rawKeys = Array.from({ length: KEYS }, (_, i) => encodeKey(keyOf(i)));
const rawValue = encodeValue(value).bytes;
const prefix = encodeKey(["messages"]);
const prefixEnd = new Uint8Array([...prefix, 0xff]);

const stores = await Promise.all(testDrivers.map(async (driver) => {
  const store = new SessionStore({ root: join(dir, driver), driver });
  return { driver, store, kv: await store.openKv("bench", "session") };
}));

// Fill every target with the same 1000 entries.
for (let i = 0; i < KEYS; i++) {
  await denoKv.set(keyOf(i), value);
  rawPut.run(rawKeys[i]!, rawValue, i);
  for (const s of stores) await s.kv.set(keyOf(i), value);
}

let n = 0;

Deno.bench({ name: "Deno KV (file)", group: "set", baseline: true }, async () => {
  await denoKv.set(keyOf(n++), value);
});
Deno.bench({ name: "raw node:sqlite", group: "set" }, () => {
  rawPut.run(rawKeys[n++ % KEYS]!, rawValue, n);
});
for (const { driver, kv } of stores) {
  Deno.bench({ name: `SessionKv (${driver})`, group: "set" }, async () => {
    await kv.set(keyOf(n++), value);
  });
}

Deno.bench({ name: "Deno KV (file)", group: "get", baseline: true }, async () => {
  await denoKv.get(keyOf(n++));
});
Deno.bench({ name: "raw node:sqlite", group: "get" }, () => {
  rawGet.get(rawKeys[n++ % KEYS]!);
});
for (const { driver, kv } of stores) {
  Deno.bench({ name: `SessionKv (${driver})`, group: "get" }, async () => {
    await kv.get(keyOf(n++));
  });
}

Deno.bench({ name: "Deno KV (file)", group: "list 1000", baseline: true }, async () => {
  for await (const _ of denoKv.list({ prefix: ["messages"] }, { batchSize: 1000 }));
});
Deno.bench({ name: "raw node:sqlite", group: "list 1000" }, () => {
  rawList.all(prefix, prefixEnd, 1000);
});
for (const { driver, kv } of stores) {
  Deno.bench({ name: `SessionKv (${driver})`, group: "list 1000" }, async () => {
    for await (const _ of kv.list({ prefix: ["messages"] }, { batchSize: 1000 }));
  });
}

Deno.bench({ name: "Deno KV (file)", group: "atomic check+set", baseline: true }, async () => {
  const key = keyOf(n++);
  const entry = await denoKv.get(key);
  await denoKv.atomic().check(entry).set(key, value).commit();
});
Deno.bench({ name: "raw node:sqlite", group: "atomic check+set" }, () => {
  const k = rawKeys[n++ % KEYS]!;
  raw.exec("BEGIN IMMEDIATE");
  rawGet.get(k);
  rawPut.run(k, rawValue, n);
  raw.exec("COMMIT");
});
for (const { driver, kv } of stores) {
  Deno.bench({ name: `SessionKv (${driver})`, group: "atomic check+set" }, async () => {
    const key = keyOf(n++);
    const entry = await kv.get(key);
    await kv.atomic().check(entry).set(key, value).commit();
  });
}
