import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { LeaseTimeoutError, SessionBusyError, SessionStore } from "../mod.ts";
import { openFiles, spawnFixture, withTempDir } from "./_helpers.ts";
import { testDrivers } from "./_drivers.ts";

const dbFiles = (root: string) => openFiles(root).filter((p) => p.endsWith("kv.sqlite3"));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

for (const driver of testDrivers) {
  const name = (s: string) => `[${driver}] ${s}`;

  Deno.test(
    name("10,000 concurrent operations on 2,000 sessions stay within maxOpenSessions: 64"),
    async () => {
      await withTempDir(async (root) => {
        await using store = new SessionStore({ root, driver, maxOpenSessions: 64 });
        let maxOpen = 0;
        let maxFds = 0;
        const ops = Array.from({ length: 10_000 }, async (_, i) => {
          const session = `s${i % 2000}`;
          using kv = await store.openKv("bot", session);
          await kv.set(["op", i], { i, session });
          maxOpen = Math.max(maxOpen, store.stats().openSessions);
          // Count the process's open database files while the work runs (the
          // work runs in microtasks and sync SQLite calls, so a timer-driven
          // sampler would only fire at the end).
          if (i % 40 === 0) maxFds = Math.max(maxFds, dbFiles(root).length);
          const read = await kv.get(["op", i]);
          equal((read.value as { i: number }).i, i);
        });
        const results = await Promise.allSettled(ops);
        deepEqual(results.filter((r) => r.status === "rejected"), []);
        ok(maxOpen <= 64, `${maxOpen} sessions open at once`);
        ok(maxFds <= 64, `${maxFds} database files open at once`);
        ok(maxFds > 0, "the sampler saw open files");
        ok(store.stats().evictions > 0, "files were evicted to make room");
        // Every write is readable afterwards (through reopened files).
        for (let s = 0; s < 2000; s++) {
          using kv = await store.openKv("bot", `s${s}`);
          let n = 0;
          for await (const _ of kv.list({ prefix: ["op"] })) n++;
          equal(n, 5, `session s${s}`);
        }
        ok(dbFiles(root).length <= 64);
      });
    },
  );

  Deno.test(name("an evicted or idle-closed session reopens transparently"), async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver, maxOpenSessions: 2, idleCloseMs: 50 });
      const views = [];
      for (const s of ["a", "b", "c"]) {
        const kv = await store.openKv("bot", s);
        await kv.set(["name"], s);
        views.push(kv);
      }
      equal(store.stats().openSessions, 2);
      equal(store.stats().evictions, 1);
      equal((await views[0]!.get(["name"])).value, "a", "evicted session reads back");
      await sleep(300);
      equal(store.stats().openSessions, 0, "idle files closed");
      equal(dbFiles(root).length, 0);
      for (const [i, kv] of views.entries()) {
        equal((await kv.get(["name"])).value, ["a", "b", "c"][i]);
        kv.close();
      }
    });
  });

  Deno.test(
    name("a write waiting on another process's lock keeps its file open and the loop free"),
    async () => {
      await withTempDir(async (root) => {
        await using store = new SessionStore({ root, driver, maxOpenSessions: 1 });
        using a = await store.openKv("bot", "a");
        await a.set(["x"], 0);
        await using holder = spawnFixture("hold_lock.ts", [
          join(root, "bot", "a", "kv.sqlite3"),
          "2000",
        ]);
        await holder.waitFor("locked");
        const started = performance.now();
        const blockedWrite = a.set(["x"], 1);
        // Session B needs A's slot, which A's pending write pins: B waits too,
        // but timers keep firing: measure the event loop's lag meanwhile.
        let maxLag = 0;
        let last = performance.now();
        const lag = setInterval(() => {
          const now = performance.now();
          maxLag = Math.max(maxLag, now - last - 5);
          last = now;
        }, 5);
        const bOps = (async () => {
          using b = await store.openKv("bot", "b");
          await b.set(["y"], 1);
          return performance.now();
        })();
        const aDone = await blockedWrite.then(() => performance.now());
        const bDone = await bOps;
        clearInterval(lag);
        ok(aDone - started >= 1500, `A's write waited for the lock (${aDone - started} ms)`);
        ok(bDone >= aDone, "B got a file slot only after A's write finished");
        ok(maxLag < 50, `event loop lag ${maxLag.toFixed(1)} ms`);
        equal((await a.get(["x"])).value, 1);
      });
    },
  );

  Deno.test(
    name("operations on other sessions run with < 50 ms loop lag while a process locks one"),
    async () => {
      await withTempDir(async (root) => {
        await using store = new SessionStore({ root, driver });
        using a = await store.openKv("bot", "a");
        using b = await store.openKv("bot", "b");
        await a.set(["x"], 0);
        await using holder = spawnFixture("hold_lock.ts", [
          join(root, "bot", "a", "kv.sqlite3"),
          "2000",
        ]);
        await holder.waitFor("locked");
        const blocked = a.set(["x"], 1);
        let maxLag = 0;
        let ops = 0;
        const until = performance.now() + 1500;
        while (performance.now() < until) {
          const t0 = performance.now();
          await b.set(["n"], ops);
          await b.get(["n"]);
          await new Promise((resolve) => setTimeout(resolve, 0));
          maxLag = Math.max(maxLag, performance.now() - t0);
          ops++;
        }
        ok(ops > 100, `${ops} operation pairs on B while A was locked`);
        ok(maxLag < 50, `slowest operation pair on B took ${maxLag.toFixed(1)} ms`);
        await blocked;
        equal((await a.get(["x"])).value, 1);
      });
    },
  );

  Deno.test(name("a lock held longer than busyTimeoutMs fails with SessionBusyError"), async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver, busyTimeoutMs: 200 });
      using a = await store.openKv("bot", "a");
      await a.set(["x"], 0);
      await using holder = spawnFixture("hold_lock.ts", [
        join(root, "bot", "a", "kv.sqlite3"),
        "1500",
      ]);
      await holder.waitFor("locked");
      const error = await a.set(["x"], 1).then(() => undefined, (e) => e);
      ok(error instanceof SessionBusyError, String(error));
      equal((error.cause as { code: number }).code & 0xff, 5, "cause keeps SQLITE_BUSY");
      await holder.waitFor("released");
      equal((await a.get(["x"])).value, 0, "the failed write left nothing behind");
    });
  });

  Deno.test(
    name("two processes incrementing one counter with check+set lose nothing"),
    async () => {
      await withTempDir(async (root) => {
        await using p1 = spawnFixture("counter.ts", [root, driver, "2000"]);
        await using p2 = spawnFixture("counter.ts", [root, driver, "2000"]);
        const [s1, s2] = await Promise.all([p1.process.status, p2.process.status]);
        ok(s1.success && s2.success);
        await using store = new SessionStore({ root, driver });
        using kv = await store.openKv("bot", "counter");
        equal((await kv.get(["counter"])).value, 4000);
        const retries = [p1, p2].map((p) => JSON.parse(p.lines.at(-1)!).retries as number);
        console.log(`retries: ${retries.join(", ")}`);
      });
    },
  );

  Deno.test(name("acquire() grants turns first come, first served"), async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver });
      const order: number[] = [];
      const first = await store.acquire("bot", "s");
      const waiting = [1, 2, 3, 4, 5].map((i) =>
        store.withSession("bot", "s", async (kv) => {
          order.push(i);
          await kv.set(["turn"], i);
          await sleep(2);
        })
      );
      await sleep(20);
      equal(store.stats().waiters, 5);
      deepEqual(order, [], "nobody runs while the first turn is held");
      await first.release();
      await Promise.all(waiting);
      deepEqual(order, [1, 2, 3, 4, 5]);
      equal(store.stats().leasedSessions, 0);
    });
  });

  Deno.test(name("acquire() times out, honours abort and leaves the queue intact"), async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver });
      const held = await store.acquire("bot", "s");
      await rejects(store.acquire("bot", "s", { timeoutMs: 50 }), LeaseTimeoutError);
      const controller = new AbortController();
      const aborted = store.acquire("bot", "s", { signal: controller.signal });
      const reason = new Error("user went away");
      controller.abort(reason);
      await rejects(aborted, (e) => e === reason);
      await rejects(
        store.acquire("bot", "s", { signal: AbortSignal.abort(reason) }),
        (e) => e === reason,
      );
      const next = store.acquire("bot", "s", { timeoutMs: 1000 });
      await held.release();
      await held.release(); // twice is harmless
      const lease = await next;
      ok(lease.held);
      await lease.release();
      ok(!lease.held);
      equal(store.stats().waiters, 0);
    });
  });

  Deno.test(name("withSession() releases the turn when fn throws"), async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver });
      await rejects(
        store.withSession("bot", "s", () => {
          throw new Error("boom");
        }),
        /boom/,
      );
      equal(store.stats().leasedSessions, 0);
      const again = await store.withSession("bot", "s", async (kv) => {
        await kv.set(["ok"], true);
        return "done";
      });
      equal(again, "done");
    });
  });

  Deno.test(
    name("a lease is exclusive across processes and a SIGKILLed holder frees it"),
    async () => {
      await withTempDir(async (root) => {
        await using store = new SessionStore({ root, driver });
        const holder = spawnFixture("lease_holder.ts", [root, driver]);
        await holder.waitFor("leased");
        await rejects(store.acquire("bot", "leased", { timeoutMs: 300 }), LeaseTimeoutError);
        const waiting = store.acquire("bot", "leased", { timeoutMs: 10_000 });
        const killedAt = performance.now();
        holder.process.kill("SIGKILL");
        await holder[Symbol.asyncDispose]();
        const lease = await waiting;
        const after = performance.now() - killedAt;
        ok(after < 2000, `turn granted ${after.toFixed(0)} ms after the kill`);
        ok(((await lease.kv.get<number>(["holder"])).value ?? 0) > 0);
        await lease.release();
      });
    },
  );

  Deno.test(name("a lease released by the other process is granted here"), async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver });
      await using holder = spawnFixture("lease_holder.ts", [root, driver]);
      await holder.waitFor("leased");
      const waiting = store.acquire("bot", "leased", { timeoutMs: 10_000 });
      await sleep(100);
      await holder.closeStdin();
      const lease = await waiting;
      ok(lease.held);
      await lease.release();
      ok((await holder.process.status).success);
    });
  });
}
