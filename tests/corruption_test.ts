/**
 * Corruption isolation: one session's database is damaged (garbage, cut
 * short, a bad page behind a good header, replaced by a directory or a
 * symbolic link). Operations on it fail with `SessionCorruptedError` that
 * keeps SQLite's error as `cause`; the other sessions of the same store keep
 * working; `sessions()` and `cleanup()` report it instead of crashing; no
 * slot, lock or file descriptor leaks; and the damaged file keeps its bytes.
 */
import { deepEqual, equal, notEqual, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { SessionCorruptedError, SessionStore, SqliteError } from "../mod.ts";
import { testDrivers } from "./_drivers.ts";
import { openFiles, withTempDir } from "./_helpers.ts";

const PAGE = 4096;

/** Deterministic non-database bytes. */
function garbage(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

async function sha256(path: string): Promise<string> {
  const bytes = await Deno.readFile(path);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Names in a directory, sorted. */
async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

/** Identity and content of every entry of a directory (lstat, no following). */
async function fingerprint(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of await names(dir)) {
    const path = join(dir, name);
    const info = await Deno.lstat(path);
    if (name === "open.lock" || name === "lease.lock") {
      out[name] = "lock";
    } else if (name.endsWith("-shm") || (name.endsWith("-wal") && info.size === 0)) {
      // SQLite's runtime files: the shared-memory index and an empty WAL,
      // which SQLite itself creates and removes; they hold no data.
      continue;
    } else if (info.isFile) {
      out[name] = `file ${info.size} ${await sha256(path)}`;
    } else if (info.isSymlink) {
      out[name] = `link ${await Deno.readLink(path)}`;
    } else {
      out[name] = `dir ${(await names(path)).join(",")}`;
    }
  }
  return out;
}

interface Damage {
  /** How the file is damaged. */
  name: string;
  /** Damages `db`, a closed, checkpointed database of about 350 pages. */
  apply(db: string, outside: string): Promise<void>;
  /** Opening fails (the damage is in the header); otherwise a full read does. */
  failsAtOpen: boolean;
}

const DAMAGES: Damage[] = [
  {
    name: "overwritten with garbage",
    failsAtOpen: true,
    async apply(db) {
      const size = (await Deno.stat(db)).size;
      await Deno.writeFile(db, garbage(size, 7));
    },
  },
  {
    name: "truncated to a size that is not a page multiple",
    failsAtOpen: true,
    async apply(db) {
      await Deno.truncate(db, 3 * PAGE + 123);
    },
  },
  {
    name: "truncated inside its 100-byte header",
    failsAtOpen: true,
    async apply(db) {
      await Deno.truncate(db, 50);
    },
  },
  {
    name: "garbage in data pages behind an intact header",
    failsAtOpen: false,
    async apply(db) {
      const file = await Deno.open(db, { write: true });
      try {
        await file.seek(20 * PAGE, Deno.SeekMode.Start);
        await file.write(garbage(10 * PAGE, 11));
      } finally {
        file.close();
      }
    },
  },
  {
    name: "replaced by a directory",
    failsAtOpen: true,
    async apply(db) {
      await Deno.remove(db);
      await Deno.mkdir(db);
      await Deno.writeTextFile(join(db, "keep.txt"), "not a database");
    },
  },
  {
    name: "replaced by a symbolic link to a file outside the root",
    failsAtOpen: true,
    async apply(db, outside) {
      await Deno.copyFile(db, outside); // A valid database: it must still not be used.
      await Deno.remove(db);
      await Deno.symlink(outside, db);
    },
  },
];

/** Writes `n` keys of about 1 KB to a session. */
async function fill(store: SessionStore, session: string, n: number): Promise<void> {
  using kv = await store.openKv("bot", session);
  for (let i = 0; i < n; i += 50) {
    const op = kv.atomic();
    for (let j = i; j < Math.min(n, i + 50); j++) op.set(["k", j], `${"v".repeat(1000)}${j}`);
    equal((await op.commit()).ok, true);
  }
}

/** Asserts that `error` is a SessionCorruptedError for `db` that keeps SQLite's error. */
function assertCorrupted(error: unknown, db: string, withSqliteCause: boolean): true {
  ok(error instanceof SessionCorruptedError, `expected SessionCorruptedError, got ${error}`);
  equal(error.name, "SessionCorruptedError");
  ok(error.path === db || error.path === join(db, ".."), `path ${error.path}`);
  if (withSqliteCause) {
    ok(error.cause instanceof SqliteError, `cause ${error.cause}`);
    ok(
      [11, 26].includes(error.cause.primaryCode),
      `cause code ${error.cause.code}: ${error.cause.message}`,
    );
  }
  return true;
}

/** The other sessions of the store still read and write. */
async function othersWork(store: SessionStore, round: number): Promise<void> {
  using kv = await store.openKv("bot", "good");
  equal((await kv.get<string>(["k", 7])).value, `${"v".repeat(1000)}7`);
  await kv.set(["round"], round);
  equal((await kv.get(["round"])).value, round);
  using fresh = await store.openKv("bot", `fresh-${round}`);
  await fresh.set(["n"], round);
}

for (const driver of testDrivers) {
  for (const damage of DAMAGES) {
    Deno.test(`[${driver}] a session database ${damage.name} fails with SessionCorruptedError, is left untouched and does not affect other sessions`, async () => {
      await withTempDir(async (tmp) => {
        const root = join(tmp, "root");
        const victimDir = join(root, "bot", "victim");
        const db = join(victimDir, "kv.sqlite3");
        const outside = join(tmp, "outside.sqlite3");
        {
          await using setup = new SessionStore({ root, driver });
          await fill(setup, "victim", 300);
          await fill(setup, "good", 20);
        }
        await damage.apply(db, outside);
        if (damage.name.startsWith("garbage in data pages")) {
          const check = new DatabaseSync(db, { readOnly: true });
          notEqual(check.prepare("PRAGMA quick_check").get()?.quick_check, "ok", "damaged");
          check.close();
        }
        const before = await fingerprint(victimDir);
        const outsideHash = damage.name.includes("symbolic") ? await sha256(outside) : "";

        await using store = new SessionStore({ root, driver, maxOpenSessions: 2 });
        await othersWork(store, 0);
        if (damage.failsAtOpen) {
          for (let i = 0; i < 5; i++) {
            await rejects(
              store.openKv("bot", "victim"),
              (e) => assertCorrupted(e, db, !damage.name.startsWith("replaced")),
            );
          }
          await rejects(
            store.acquire("bot", "victim", { timeoutMs: 2000 }),
            (e) => assertCorrupted(e, db, !damage.name.startsWith("replaced")),
          );
          // The failed turn was passed on: the next one fails the same way, not by timeout.
          await rejects(
            store.withSession("bot", "victim", () => undefined, { timeoutMs: 2000 }),
            (e) => assertCorrupted(e, db, !damage.name.startsWith("replaced")),
          );
        } else {
          using kv = await store.openKv("bot", "victim");
          const read = async () => {
            for await (const _ of kv.list({ prefix: ["k"] }));
          };
          await rejects(read(), (e) => assertCorrupted(e, db, true));
          // Once the store has seen the damage it must not write into the file.
          await rejects(kv.set(["after"], 1), (e) => assertCorrupted(e, db, true));
          await rejects(read(), (e) => assertCorrupted(e, db, true));
        }
        await othersWork(store, 1);
        // No slot leaked by the failures (maxOpenSessions: 2): two more sessions open at once.
        {
          using a = await store.openKv("bot", "slot-a");
          using b = await store.openKv("bot", "slot-b");
          await Promise.all([a.set(["x"], 1), b.set(["x"], 2)]);
        }
        if (damage.failsAtOpen) {
          deepEqual(openFiles(victimDir).filter((p) => !p.endsWith(".lock")), [], "no fd left");
        }

        const listed = new Map<string, number>();
        for await (const s of store.sessions()) listed.set(s.sessionId, s.sizeBytes);
        ok(listed.has("victim"), `sessions() lists the damaged session: ${[...listed.keys()]}`);
        ok(listed.has("good"));

        const dry = await store.cleanup({ olderThanMs: 0, dryRun: true });
        ok(dry.scanned >= 2, "the dry run looked at every session");
        const recent = await store.cleanup(); // 7 days: every session is recent.
        equal(recent.deleted, 0);
        deepEqual(recent.errors, []);

        await othersWork(store, 2);
        deepEqual(await fingerprint(victimDir), before, "the damaged session is unchanged");
        if (outsideHash) equal(await sha256(outside), outsideHash, "the link target is unchanged");

        // Deleting the session is the way out; then it starts afresh.
        equal(await store.deleteSession("bot", "victim"), true);
        using again = await store.openKv("bot", "victim");
        equal((await again.get(["k", 1])).value, null);
        await again.set(["k", 1], "new");
        if (outsideHash) equal(await sha256(outside), outsideHash, "the link target is unchanged");
      });
    });
  }
}
