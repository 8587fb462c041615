/**
 * `lockingMode: "exclusive"`: a process keeps every session file it has open
 * locked, so its reads and writes take no per-transaction locks. Checked here
 * with real files and a second real process:
 *
 * - the option and `SESSIONKV_LOCKING_MODE` are validated;
 * - WAL runs without `-shm`, and the file reopens in either mode;
 * - another process cannot read or write the session while it is open there
 *   (a clear `SessionBusyError` after `busyTimeoutMs`, nothing lost), and can
 *   once that process closed it;
 * - the files backend suites also run in this mode (`node-exclusive` in
 *   `_backends.ts`), and `crash_test` kills writers in it.
 */
import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { SessionBusyError, SessionStore } from "../mod.ts";
import { sessionDir } from "./fixtures/cleanup_util.ts";
import { testDrivers } from "./_drivers.ts";
import { spawnFixture, withTempDir } from "./_helpers.ts";

Deno.test("lockingMode accepts normal and exclusive, and rejects anything else with a TypeError", async () => {
  await withTempDir(async (root) => {
    await new SessionStore({ root }).close();
    for (const lockingMode of ["normal", "exclusive"] as const) {
      await new SessionStore({ root, lockingMode }).close();
    }
    throws(
      () => new SessionStore({ root, lockingMode: "EXCLUSIVE" as "exclusive" }),
      (e) =>
        e instanceof TypeError && /lockingMode must be "normal" or "exclusive"/.test(e.message),
    );
  });
});

Deno.test("SessionStore.fromEnv reads SESSIONKV_LOCKING_MODE, and rejects a bad value", async () => {
  await withTempDir(async (root) => {
    {
      const env: Record<string, string> = {
        SESSIONKV_ROOT: root,
        SESSIONKV_LOCKING_MODE: "Exclusive",
      };
      await using store = SessionStore.fromEnv((name) => env[name]);
      using kv = await store.openKv("bot", "s");
      await kv.set(["k"], 1);
      // The mode shows on disk: no -shm while the session is open.
      deepEqual(await names(sessionDir(root, "bot", "s")), [
        "kv.sqlite3",
        "kv.sqlite3-wal",
        "open.lock",
      ]);
    }
    const env: Record<string, string> = { SESSIONKV_ROOT: root, SESSIONKV_LOCKING_MODE: "shared" };
    throws(
      () => SessionStore.fromEnv((name) => env[name]),
      (e) =>
        e instanceof TypeError &&
        /SESSIONKV_LOCKING_MODE must be normal or exclusive/.test(e.message),
    );
  });
});

async function names(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
}

for (const driver of testDrivers) {
  Deno.test(`[${driver}] exclusive WAL keeps no -shm file, and the session reopens in either mode with everything in it`, async () => {
    await withTempDir(async (root) => {
      const dir = sessionDir(root, "bot", "s");
      {
        await using store = new SessionStore({ root, driver, lockingMode: "exclusive" });
        using kv = await store.openKv("bot", "s");
        for (let i = 0; i < 100; i++) await kv.set(["n", i], i);
        ok(!(await names(dir)).includes("kv.sqlite3-shm"), "no -shm while open");
      }
      {
        await using store = new SessionStore({ root, driver });
        using kv = await store.openKv("bot", "s");
        equal((await Array.fromAsync(kv.list({ prefix: ["n"] }))).length, 100);
        await kv.set(["normal"], true);
      }
      await using store = new SessionStore({ root, driver, lockingMode: "exclusive" });
      using kv = await store.openKv("bot", "s");
      equal((await kv.get(["normal"])).value, true);
      equal((await kv.get(["n", 99])).value, 99);
    });
  });

  Deno.test(`[${driver}] a session open in exclusive mode in another process is busy here until that process closes it`, async () => {
    await withTempDir(async (root) => {
      await using child = spawnFixture("./cleanup_holder.ts", [
        root,
        "bot",
        "owned",
        driver,
        "exclusive",
      ]);
      await child.waitFor("ready");
      await using store = new SessionStore({ root, driver, busyTimeoutMs: 300 });
      using other = await store.openKv("bot", "other");
      await other.set(["k"], "other sessions are not affected");
      const started = performance.now();
      await rejects(
        store.openKv("bot", "owned"),
        (e) => e instanceof SessionBusyError && /stayed locked/.test(e.message),
      );
      const waited = performance.now() - started;
      ok(waited >= 250, `waited ${waited.toFixed(0)} ms for busyTimeoutMs before failing`);
      await rejects(
        store.withSession("bot", "owned", (kv) => kv.set(["written"], "lost?")),
        SessionBusyError,
      );
      equal((await other.get(["k"])).value, "other sessions are not affected");
      await child.closeStdin();
      await child.waitFor("done");
      equal((await child.process.status).code, 0);
      // The holder's three writes are there; the refused write is not.
      using kv = await store.openKv("bot", "owned");
      equal((await kv.get(["written"])).value, 3);
    });
  });
}

Deno.test("exclusive mode also applies to a rollback-journal session: a second process waits, then reads", async () => {
  await withTempDir(async (root) => {
    await using owner = new SessionStore({ root, wal: false, lockingMode: "exclusive" });
    using kv = await owner.openKv("bot", "s");
    await kv.set(["k"], "v");
    ok(!(await names(sessionDir(root, "bot", "s"))).includes("kv.sqlite3-wal"));
    const reader = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { SessionStore } from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
         await using store = new SessionStore({ root: ${
          JSON.stringify(root)
        }, wal: false, busyTimeoutMs: 5000 });
         using kv = await store.openKv("bot", "s");
         console.log(JSON.stringify((await kv.get(["k"])).value));`,
      ],
      cwd: new URL("..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // The reader waits on the lock (asynchronously) until the owner closes.
    await new Promise((resolve) => setTimeout(resolve, 300));
    kv.close();
    await owner.close();
    const out = await reader.output();
    equal(new TextDecoder().decode(out.stderr), "");
    equal(new TextDecoder().decode(out.stdout).trim(), '"v"');
  });
});
