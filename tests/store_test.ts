import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { SessionStore, SessionStoreClosedError } from "../mod.ts";
import { openFiles, withTempDir } from "./_helpers.ts";
import { testDrivers } from "./_drivers.ts";

for (const driver of testDrivers) {
  Deno.test(`[${driver}] 100 concurrent openKv() calls for one session open one file`, async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver });
      const views = await Promise.all(
        Array.from({ length: 100 }, () => store.openKv("bot", "shared")),
      );
      equal(store.stats().opens, 1);
      const dbFiles = openFiles(join(root, "bot", "shared", "kv.sqlite3"))
        .filter((p) => p.endsWith("kv.sqlite3"));
      equal(dbFiles.length, 1);
      await Promise.all(views.map((kv, i) => kv.set(["n", i], i)));
      let count = 0;
      for await (const _ of views[0]!.list({ prefix: ["n"] })) count++;
      equal(count, 100);
      for (const kv of views) kv.close();
    });
  });

  Deno.test(`[${driver}] a session is created lazily and its data survives reopening the store`, async () => {
    await withTempDir(async (root) => {
      const store = new SessionStore({ root, driver });
      deepEqual([...Deno.readDirSync(root)], []);
      const kv = await store.openKv("bot", "s1");
      const { versionstamp } = await kv.set(["k"], "v");
      kv.close();
      await store.close();
      const again = new SessionStore({ root, driver });
      using kv2 = await again.openKv("bot", "s1");
      deepEqual(await kv2.get(["k"]), { key: ["k"], value: "v", versionstamp });
      const next = await kv2.set(["k"], "w");
      ok(next.versionstamp > versionstamp, "versionstamps grow across reopen");
      await again.close();
    });
  });

  Deno.test(`[${driver}] close() waits for running work, is idempotent and rejects later calls`, async () => {
    await withTempDir(async (root) => {
      const store = new SessionStore({ root, driver });
      const kv = await store.openKv("bot", "s");
      const writes = Array.from({ length: 50 }, (_, i) => kv.set(["k", i], i));
      const closing = store.close();
      equal(store.close(), closing);
      await closing;
      const results = await Promise.allSettled(writes);
      // Writes that started before close() completed; none was cut off half-way.
      ok(results.every((r) => r.status === "fulfilled"));
      await rejects(store.openKv("bot", "s"), SessionStoreClosedError);
      await rejects(kv.get(["k", 1]), SessionStoreClosedError);
      await rejects(store.acquire("bot", "s"), SessionStoreClosedError);
      equal(openFiles(root).length, 0, "no file of the store stays open");
      const reopened = new SessionStore({ root, driver });
      using kv2 = await reopened.openKv("bot", "s");
      let n = 0;
      for await (const _ of kv2.list({ prefix: ["k"] })) n++;
      equal(n, 50);
      await reopened.close();
    });
  });
}

Deno.test("SessionStore validates its options", () => {
  throws(() => new SessionStore({ root: "" }), TypeError);
  throws(() => new SessionStore({} as { root: string }), TypeError);
  throws(() => new SessionStore({ root: "x", maxOpenSessions: 0 }), RangeError);
  throws(() => new SessionStore({ root: "x", busyTimeoutMs: -1 }), RangeError);
  throws(
    () => new SessionStore({ root: "x", cacheSizeKiB: "big" as unknown as number }),
    TypeError,
  );
  throws(() => new SessionStore({ root: "x", driver: "pg" as "node" }), TypeError);
});

Deno.test("SessionStore.fromEnv() reads SESSIONKV_* settings and rejects malformed ones", async () => {
  await withTempDir(async (root) => {
    const env: Record<string, string> = {
      SESSIONKV_ROOT: root,
      SESSIONKV_WAL: "false",
      SESSIONKV_BUSY_TIMEOUT_MS: "250",
    };
    {
      await using store = SessionStore.fromEnv((name) => env[name]);
      equal(store.root, root);
      using kv = await store.openKv("bot", "s");
      await kv.set(["k"], 1);
      const files = [...Deno.readDirSync(join(root, "bot", "s"))].map((e) => e.name);
      ok(!files.includes("kv.sqlite3-wal"), `rollback journal, no WAL: ${files}`);
    }
    throws(
      () => SessionStore.fromEnv((name) => ({ ...env, SESSIONKV_BUSY_TIMEOUT_MS: "soon" })[name]),
      TypeError,
    );
    throws(
      () => SessionStore.fromEnv((name) => ({ ...env, SESSIONKV_WAL: "maybe" })[name]),
      TypeError,
    );
    throws(
      () =>
        SessionStore.fromEnv((name) =>
          ({ ...env, SESSIONKV_CLEANUP_ENABLED: "1", SESSIONKV_CLEANUP_INTERVAL_HOURS: "-3" })[name]
        ),
      RangeError,
    );
  });
});

for (const driver of testDrivers) {
  Deno.test(`[${driver}] cleanup() sweeps expired keys from disk in sessions it keeps`, async () => {
    await withTempDir(async (root) => {
      const dir = join(root, "bot", "s");
      {
        await using store = new SessionStore({ root, driver });
        using kv = await store.openKv("bot", "s");
        await kv.set(["short"], "x".repeat(1000), { expireIn: 50 });
        await kv.set(["kept"], 1);
      }
      ok(
        [...Deno.readDirSync(dir)].some((e) => e.name === "expires.at"),
        "closing left an expiry marker",
      );
      const rows = () => {
        const db = new DatabaseSync(join(dir, "kv.sqlite3"), { readOnly: true });
        try {
          return Number(db.prepare("SELECT count(*) AS n FROM kv").get()!.n);
        } finally {
          db.close();
        }
      };
      equal(rows(), 2, "the expired row is still on disk");
      await new Promise((resolve) => setTimeout(resolve, 100));
      await using store = new SessionStore({ root, driver });
      const report = await store.cleanup({ olderThanDays: 7 });
      equal(report.deleted, 0, "an active session is kept");
      await store.close();
      equal(rows(), 1, "the expired row was swept");
      ok(
        ![...Deno.readDirSync(dir)].some((e) => e.name === "expires.at"),
        "no expiry marker once nothing expires",
      );
    });
  });

  Deno.test(`[${driver}] a stale expiry marker is removed by the sweep it sends cleanup to do`, async () => {
    await withTempDir(async (root) => {
      const dir = join(root, "bot", "s");
      {
        await using store = new SessionStore({ root, driver });
        using kv = await store.openKv("bot", "s");
        await kv.set(["kept"], 1);
      }
      const marker = join(dir, "expires.at");
      ok(![...Deno.readDirSync(dir)].some((e) => e.name === "expires.at"), "no keys expire");
      // Left by a connection whose expiring key was deleted since.
      Deno.writeTextFileSync(marker, "1");
      {
        await using store = new SessionStore({ root, driver });
        const report = await store.cleanup({ olderThanDays: 7 });
        equal(report.deleted, 0, "an active session is kept");
      }
      ok(![...Deno.readDirSync(dir)].some((e) => e.name === "expires.at"), "marker removed");
      await using store = new SessionStore({ root, driver });
      using kv = await store.openKv("bot", "s");
      equal((await kv.get(["kept"])).value, 1);
    });
  });
}
