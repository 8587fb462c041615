/**
 * Private to the benches: the stores `bench/compare.ts` runs the same
 * workloads on. Each subject holds `sessions` sessions of {@linkcode KEYS}
 * entries and answers one operation per call; a synchronous subject returns
 * nothing, so the timing loop awaits only real promises.
 *
 * - `SessionKv (node)`, `SessionKv (ffi)`, `SessionKv (node, exclusive)`: one
 *   store, one session file each; the {@linkcode SESSIONKV_VARIANTS}.
 * - `Deno KV (file)`: one `Deno.openKv(path)` database, the session id as the
 *   first key part (how one would keep sessions in Deno KV).
 * - `raw node:sqlite`: one file per session, prepared statements, values
 *   stored pre-encoded and returned undecoded (the practical limit).
 * - `shared file`: one SQLite file for every session, a table keyed by
 *   `(session, key)`, the same raw statements (the design sessionkv replaces).
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import { type SessionKv, SessionStore, type SessionStoreOptions } from "../mod.ts";
import { encodeKey } from "../src/codec/key_codec.ts";
import { encodeValue } from "../src/codec/value_codec.ts";

/** Entries per session. */
export const KEYS = 1000;

/** The value every workload writes: a chat message. */
export const VALUE = {
  role: "user",
  text: "hello, how do I keep state per conversation?",
  n: 1,
} as const;

/** Ids of the `SessionStore` configurations under test. */
export type SessionKvId = "node" | "ffi" | "exclusive";

/** Ids of the subjects. */
export type SubjectId = SessionKvId | "denokv" | "raw" | "shared";

/** A `SessionStore` configuration under test. */
export interface SessionKvVariant {
  /** Which subject. */
  readonly id: SessionKvId;
  /** The SQLite driver. */
  readonly driver: "node" | "ffi";
  /** SQLite's locking mode for each open session file. */
  readonly lockingMode: "normal" | "exclusive";
}

/** The `SessionStore` configurations under test, in table order. */
export const SESSIONKV_VARIANTS: readonly SessionKvVariant[] = [
  { id: "node", driver: "node", lockingMode: "normal" },
  { id: "ffi", driver: "ffi", lockingMode: "normal" },
  { id: "exclusive", driver: "node", lockingMode: "exclusive" },
];

/** Every subject, in table order. */
export const SUBJECT_IDS: readonly SubjectId[] = [
  ...SESSIONKV_VARIANTS.map((v) => v.id),
  "denokv",
  "raw",
  "shared",
];

/** The `SessionStore` options that select `variant`. */
export function variantOptions(
  variant: Pick<SessionKvVariant, "driver" | "lockingMode">,
): Pick<SessionStoreOptions, "driver" | "lockingMode"> {
  return { driver: variant.driver, lockingMode: variant.lockingMode };
}

/** What one call of a workload may return: nothing, or a promise to await. */
export type OpResult = void | Promise<unknown>;

/** A store under test, filled and ready. */
export interface Subject extends AsyncDisposable {
  /** Which subject. */
  readonly id: SubjectId;
  /** Writes entry `i` of session `s`. */
  set(s: number, i: number): OpResult;
  /** Reads entry `i` of session `s`. */
  get(s: number, i: number): OpResult;
  /** Reads entries `i` to `i + 9` of session `s` in one snapshot. */
  getMany(s: number, i: number): OpResult;
  /** Lists all {@linkcode KEYS} entries of session `s`. */
  list(s: number): OpResult;
  /** Reads entry `i` of session `s`, then rewrites it if unchanged, atomically. */
  atomic(s: number, i: number): OpResult;
}

/** Display names of the subjects. */
export const SUBJECT_NAMES: Record<SubjectId, string> = {
  node: "SessionKv (node)",
  ffi: "SessionKv (ffi)",
  exclusive: "SessionKv (node, exclusive)",
  denokv: "Deno KV (file)",
  raw: "raw node:sqlite",
  shared: "shared file",
};

const keyOf = (i: number) => ["messages", i % KEYS];
const sessionId = (s: number) => `s${s}`;
const encodedValue = encodeValue(VALUE).bytes;
const encodedKeys = Array.from({ length: KEYS }, (_, i) => encodeKey(keyOf(i)));
const prefix = encodeKey(["messages"]);
const prefixEnd = Uint8Array.of(...prefix, 0xff);

/**
 * Opens `sessions` sessions of a `SessionStore` configured as `variant` and
 * fills each with {@linkcode KEYS} entries.
 */
export async function sessionKvSubject(
  variant: SessionKvVariant,
  root: string,
  sessions: number,
): Promise<Subject> {
  // Every session stays open: this measures operations, not eviction.
  const store = new SessionStore({
    root,
    ...variantOptions(variant),
    maxOpenSessions: sessions,
    idleCloseMs: 3_600_000,
  });
  const kvs: SessionKv[] = [];
  for (let s = 0; s < sessions; s++) {
    const kv = await store.openKv("bench", sessionId(s));
    const fill = kv.atomic();
    for (let i = 0; i < KEYS; i++) fill.set(keyOf(i), VALUE);
    await fill.commit();
    kvs.push(kv);
  }
  return {
    id: variant.id,
    set: (s, i) => kvs[s]!.set(keyOf(i), VALUE),
    get: (s, i) => kvs[s]!.get(keyOf(i)),
    getMany: (s, i) => kvs[s]!.getMany(Array.from({ length: 10 }, (_, j) => keyOf(i + j))),
    list: async (s) => {
      for await (const _ of kvs[s]!.list({ prefix: ["messages"] }, { batchSize: KEYS }));
    },
    atomic: async (s, i) => {
      const kv = kvs[s]!;
      const entry = await kv.get(keyOf(i));
      await kv.atomic().check(entry).set(entry.key, VALUE).commit();
    },
    async [Symbol.asyncDispose]() {
      for (const kv of kvs) kv.close();
      await store.close();
    },
  };
}

/** Real Deno KV on one file; sessions are the first key part. */
export async function denoKvSubject(path: string, sessions: number): Promise<Subject> {
  const kv = await Deno.openKv(path);
  const key = (s: number, i: number) => [sessionId(s), "messages", i % KEYS];
  for (let s = 0; s < sessions; s++) {
    const fill = kv.atomic();
    for (let i = 0; i < KEYS; i++) fill.set(key(s, i), VALUE);
    await fill.commit();
  }
  return {
    id: "denokv",
    set: (s, i) => kv.set(key(s, i), VALUE),
    get: (s, i) => kv.get(key(s, i)),
    getMany: (s, i) => kv.getMany(Array.from({ length: 10 }, (_, j) => key(s, i + j))),
    list: async (s) => {
      const selector = { prefix: [sessionId(s), "messages"] };
      for await (const _ of kv.list(selector, { batchSize: KEYS }));
    },
    atomic: async (s, i) => {
      const entry = await kv.get(key(s, i));
      await kv.atomic().check(entry).set(entry.key, VALUE).commit();
    },
    [Symbol.asyncDispose]() {
      kv.close();
      return Promise.resolve();
    },
  };
}

/** The pragmas sessionkv uses, for the raw subjects. */
export const RAW_PRAGMAS = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL";

/** Creates the raw table: `(k)` per session file, or `(s, k)` in the shared file. */
export function createRawTable(db: DatabaseSync, shared: boolean): void {
  db.exec(`${RAW_PRAGMAS};
    CREATE TABLE IF NOT EXISTS kv (${shared ? "s TEXT NOT NULL, " : ""}k BLOB NOT NULL,
      v BLOB NOT NULL, version INTEGER NOT NULL,
      PRIMARY KEY (${shared ? "s, " : ""}k)) WITHOUT ROWID`);
}

/** One session's raw statements, the session already bound where the table has one. */
interface RawSession {
  db: DatabaseSync;
  put(key: Uint8Array, version: number): void;
  /** `[value, version]`, the value undecoded. */
  get(key: Uint8Array): [Uint8Array, number] | undefined;
  version(key: Uint8Array): number | undefined;
  list(): unknown[];
}

function prepare(db: DatabaseSync, sql: string): StatementSync {
  const stmt = db.prepare(sql);
  (stmt as StatementSync & { setReturnArrays(on: boolean): void }).setReturnArrays(true);
  return stmt;
}

/** A session in its own file: statements on `(k)`. */
function ownFile(db: DatabaseSync): RawSession {
  const put = prepare(db, "INSERT OR REPLACE INTO kv (k, v, version) VALUES (?, ?, ?)");
  const get = prepare(db, "SELECT v, version FROM kv WHERE k = ?");
  const version = prepare(db, "SELECT version FROM kv WHERE k = ?");
  const list = prepare(
    db,
    "SELECT k, v, version FROM kv WHERE k >= ? AND k < ? ORDER BY k LIMIT ?",
  );
  return {
    db,
    put: (key, v) => void put.run(key, encodedValue, v),
    get: (key) => get.get(key) as unknown as [Uint8Array, number] | undefined,
    version: (key) => (version.get(key) as unknown as [number] | undefined)?.[0],
    list: () => list.all(prefix, prefixEnd, KEYS),
  };
}

/** The statements of the shared file on `(s, k)`, per session id. */
function sharedFile(db: DatabaseSync): (id: string) => RawSession {
  const put = prepare(db, "INSERT OR REPLACE INTO kv (s, k, v, version) VALUES (?, ?, ?, ?)");
  const get = prepare(db, "SELECT v, version FROM kv WHERE s = ? AND k = ?");
  const version = prepare(db, "SELECT version FROM kv WHERE s = ? AND k = ?");
  const list = prepare(
    db,
    "SELECT k, v, version FROM kv WHERE s = ? AND k >= ? AND k < ? ORDER BY k LIMIT ?",
  );
  return (id) => ({
    db,
    put: (key, v) => void put.run(id, key, encodedValue, v),
    get: (key) => get.get(id, key) as unknown as [Uint8Array, number] | undefined,
    version: (key) => (version.get(id, key) as unknown as [number] | undefined)?.[0],
    list: () => list.all(id, prefix, prefixEnd, KEYS),
  });
}

/**
 * Raw `node:sqlite`: one file and connection per session (`shared: false`),
 * or one file and connection for all (`shared: true`).
 */
export function rawSubject(dir: string, sessions: number, shared: boolean): Subject {
  const open = (name: string) => {
    const db = new DatabaseSync(join(dir, `${name}.sqlite3`));
    createRawTable(db, shared);
    return db;
  };
  const inShared = shared ? sharedFile(open("shared")) : undefined;
  const all: RawSession[] = [];
  for (let s = 0; s < sessions; s++) {
    const r = inShared?.(sessionId(s)) ?? ownFile(open(sessionId(s)));
    r.db.exec("BEGIN");
    for (let i = 0; i < KEYS; i++) r.put(encodedKeys[i]!, 1);
    r.db.exec("COMMIT");
    all.push(r);
  }
  let version = 1;
  return {
    id: shared ? "shared" : "raw",
    set(s, i) {
      all[s]!.put(encodedKeys[i % KEYS]!, ++version);
    },
    get(s, i) {
      all[s]!.get(encodedKeys[i % KEYS]!);
    },
    getMany(s, i) {
      const r = all[s]!;
      r.db.exec("BEGIN");
      for (let j = 0; j < 10; j++) r.get(encodedKeys[(i + j) % KEYS]!);
      r.db.exec("COMMIT");
    },
    list(s) {
      all[s]!.list();
    },
    atomic(s, i) {
      const r = all[s]!;
      const key = encodedKeys[i % KEYS]!;
      const seen = r.get(key)?.[1];
      r.db.exec("BEGIN IMMEDIATE");
      if (r.version(key) === seen) r.put(key, ++version);
      r.db.exec("COMMIT");
    },
    [Symbol.asyncDispose]() {
      for (const db of new Set(all.map((r) => r.db))) db.close();
      return Promise.resolve();
    },
  };
}
