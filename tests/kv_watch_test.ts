/**
 * `watch()` (spec §2.9, §6 rows 2, 4 and 15): the first chunk is the current
 * state, later chunks follow commits that change a watched key, `raw` also
 * reports no-op deletes, the limits throw synchronously, and cancelling or
 * closing ends the stream. The same source runs against real Deno KV and
 * every SessionKv target; the SessionKv-only part covers what Deno KV's local
 * backend does not do (expiry seen at once, commits from another connection)
 * and that a finished watch leaves no poll behind.
 */
import { deepEqual, equal, notEqual, ok } from "node:assert/strict";
import { kvTargets } from "./_kv_targets.ts";
import { testDrivers } from "./_drivers.ts";
import { withTempDir } from "./_helpers.ts";
import {
  assertThrowsExact,
  BAD_PART,
  BAD_RESOURCE,
  READ_TOO_LARGE,
  STAMP_RE,
  stampOf,
} from "./_kv_helpers.ts";
import { SessionStore } from "../mod.ts";
import {
  type Chunk,
  countingDriver,
  delay,
  DONE,
  valuesOf,
  WatchReader,
} from "./fixtures/watch_queue_util.ts";

// Deno 2.8+ leaves these sanitizers off by default: this suite is about not
// leaking timers, ops or resources, so turn them on for every test here.
Deno.test.sanitizer({ ops: true, resources: true });

/** How long a test waits to be sure that no chunk comes. */
const QUIET_MS = 300;

function watch(kv: Deno.Kv, keys: Deno.KvKey[], options?: { raw?: boolean }): WatchReader {
  return new WatchReader(kv.watch(keys, options) as ReadableStream<Chunk>);
}

for (const target of kvTargets) {
  const name = (what: string) => `[${target.id}] ${what}`;

  Deno.test(
    name("watch() first emits the current state of every key, in the order given"),
    async () => {
      await using t = await target.open();
      const { versionstamp } = await t.kv.set(["b"], "B");
      await t.kv.set(["unwatched"], 1);
      const w = watch(t.kv, [["c"], ["b"], ["a", 1n]]);
      deepEqual(await w.chunk(), [
        { key: ["c"], value: null, versionstamp: null },
        { key: ["b"], value: "B", versionstamp },
        { key: ["a", 1n], value: null, versionstamp: null },
      ]);
      await w.cancel();
    },
  );

  Deno.test(
    name("watch() emits again after a set, a delete and an atomic commit"),
    async () => {
      await using t = await target.open();
      const w = watch(t.kv, [["a"], ["b"]]);
      deepEqual(valuesOf(await w.chunk()), [null, null]);

      const s1 = await t.kv.set(["a"], 1);
      deepEqual(await w.chunk(), [
        { key: ["a"], value: 1, versionstamp: s1.versionstamp },
        { key: ["b"], value: null, versionstamp: null },
      ]);

      // The same value again is a new versionstamp, so it counts.
      const s2 = await t.kv.set(["a"], 1);
      const again = await w.chunk();
      equal(again[0]!.versionstamp, s2.versionstamp);
      ok(s2.versionstamp > s1.versionstamp);

      await t.kv.delete(["a"]);
      deepEqual(valuesOf(await w.chunk()), [null, null]);

      const s3 = await t.kv.atomic().set(["a"], "x").set(["b"], "y").commit();
      ok(s3.ok);
      const both = await w.chunk();
      deepEqual(valuesOf(both), ["x", "y"]);
      equal(both[0]!.versionstamp, s3.versionstamp);
      equal(both[1]!.versionstamp, s3.versionstamp);
      await w.cancel();
    },
  );

  Deno.test(
    name("watch() emits after sum, min and max mutations"),
    async () => {
      await using t = await target.open();
      const w = watch(t.kv, [["n"]]);
      deepEqual(valuesOf(await w.chunk()), [null]);
      const steps: [string, bigint][] = [["sum", 5n], ["sum", 2n], ["min", 3n], ["max", 9n]];
      for (const [op, n] of steps) {
        const atomic = t.kv.atomic();
        const result = await (op === "sum"
          ? atomic.sum(["n"], n)
          : op === "min"
          ? atomic.min(["n"], n)
          : atomic.max(["n"], n)).commit();
        const chunk = await w.chunk();
        equal(chunk[0]!.versionstamp, stampOf(result), op);
      }
      equal((valuesOf(await t.kv.getMany([["n"]]))[0] as Deno.KvU64).value, 9n);
      await w.cancel();
    },
  );

  Deno.test(
    name("watch() ignores commits to other keys, failed checks and deletes of missing keys"),
    async () => {
      await using t = await target.open();
      const first = await t.kv.set(["k"], 0);
      const w = watch(t.kv, [["k"], ["gone"]]);
      deepEqual(valuesOf(await w.chunk()), [0, null]);
      await t.kv.set(["other"], 1);
      await t.kv.set(["k", "child"], 1);
      await t.kv.delete(["gone"]);
      const failed = await t.kv.atomic()
        .check({ key: ["k"], versionstamp: null })
        .set(["k"], "never")
        .commit();
      equal(failed.ok, false);
      await w.quiet(QUIET_MS);
      // The read left pending by quiet() gets the next real change.
      const s = await t.kv.set(["k"], 2);
      const chunk = await w.chunk();
      deepEqual(valuesOf(chunk), [2, null]);
      equal(chunk[0]!.versionstamp, s.versionstamp);
      notEqual(chunk[0]!.versionstamp, first.versionstamp);
      await w.cancel();
    },
  );

  Deno.test(
    name("watch() with raw: true also emits when a missing watched key is deleted"),
    async () => {
      await using t = await target.open();
      const w = watch(t.kv, [["m"]], { raw: true });
      deepEqual(await w.chunk(), [{ key: ["m"], value: null, versionstamp: null }]);
      await t.kv.delete(["m"]);
      deepEqual(await w.chunk(), [{ key: ["m"], value: null, versionstamp: null }]);
      // A commit that does not touch the key is still not reported.
      await t.kv.set(["other"], 1);
      await w.quiet(QUIET_MS);
      await w.cancel();
    },
  );

  Deno.test(
    name("watch() of an empty key list ends at once"),
    async () => {
      await using t = await target.open();
      const w = watch(t.kv, []);
      equal(await w.next(), DONE);
    },
  );

  Deno.test(
    name("watch() takes at most 10 keys, throwing synchronously"),
    async () => {
      await using t = await target.open();
      const keys = (n: number) => Array.from({ length: n }, (_, i) => ["k", i]);
      const w = watch(t.kv, keys(10));
      equal((await w.chunk()).length, 10);
      await w.cancel();
      assertThrowsExact(() => t.kv.watch(keys(11)), "TypeError", "Too many keys (max 10)");
    },
  );

  Deno.test(
    name("watch() rejects an invalid key part synchronously"),
    async () => {
      await using t = await target.open();
      for (const part of [null, undefined, {}, new Date(0), [1], Symbol("s")]) {
        assertThrowsExact(
          () => t.kv.watch([["ok"], ["k", part as unknown as Deno.KvKeyPart]]),
          "TypeError",
          BAD_PART,
        );
      }
      assertThrowsExact(
        () => t.kv.watch(["k" as unknown as Deno.KvKey]),
        "TypeError",
        "serde_v8 error: invalid type; expected: array, got: string",
      );
    },
  );

  Deno.test(
    name("watch() checks every key part's type before the key count and sizes"),
    async () => {
      await using t = await target.open();
      const eleven = Array.from({ length: 11 }, (_, i) => [i]);
      const bad = [null as unknown as string];
      assertThrowsExact(() => t.kv.watch([...eleven, bad]), "TypeError", BAD_PART);
      assertThrowsExact(() => t.kv.watch([["x".repeat(3000)], bad]), "TypeError", BAD_PART);
      // The count comes before the sizes.
      assertThrowsExact(
        () => t.kv.watch([["x".repeat(3000)], ...eleven.slice(1)]),
        "TypeError",
        "Too many keys (max 10)",
      );
    },
  );

  Deno.test(
    name("watch() on a closed KV throws BadResource synchronously, after key types"),
    async () => {
      await using t = await target.open();
      t.kv.close();
      assertThrowsExact(() => t.kv.watch([["a"]]), "BadResource", BAD_RESOURCE);
      assertThrowsExact(() => t.kv.watch([]), "BadResource", BAD_RESOURCE);
      const eleven = Array.from({ length: 11 }, (_, i) => [i]);
      assertThrowsExact(() => t.kv.watch(eleven), "BadResource", BAD_RESOURCE);
      assertThrowsExact(() => t.kv.watch([["x".repeat(3000)]]), "BadResource", BAD_RESOURCE);
      assertThrowsExact(() => t.kv.watch([[null as unknown as string]]), "TypeError", BAD_PART);
    },
  );

  Deno.test(
    name("watch() allows an encoded key of 2049 bytes and throws above, synchronously"),
    async () => {
      await using t = await target.open();
      // A string part encodes as 0x02, the bytes, 0x00.
      const w = watch(t.kv, [["x".repeat(2047)]]);
      deepEqual(valuesOf(await w.chunk()), [null]);
      await w.cancel();
      assertThrowsExact(() => t.kv.watch([["x".repeat(2048)]]), "TypeError", READ_TOO_LARGE);
      assertThrowsExact(() => t.kv.watch([["x".repeat(5000)]]), "TypeError", READ_TOO_LARGE);
    },
  );

  Deno.test(
    name("watch() stops after reader.cancel()"),
    async () => {
      await using t = await target.open();
      const stream = t.kv.watch([["a"]]);
      const reader = stream.getReader();
      deepEqual((await reader.read()).value, [{ key: ["a"], value: null, versionstamp: null }]);
      await reader.cancel();
      await t.kv.set(["a"], 1);
      deepEqual(await reader.read(), { value: undefined, done: true });
      await reader.closed;
      // The KV keeps working, and a new watch sees the write.
      const w = watch(t.kv, [["a"]]);
      deepEqual(valuesOf(await w.chunk()), [1]);
      await w.cancel();
    },
  );

  Deno.test(
    name("kv.close() ends a watch stream normally"),
    async () => {
      await using t = await target.open();
      await t.kv.set(["a"], 1);
      const w = watch(t.kv, [["a"]]);
      const w2 = watch(t.kv, [["b"]]);
      deepEqual(valuesOf(await w.chunk()), [1]);
      deepEqual(valuesOf(await w2.chunk()), [null]);
      const pending = w.next(); // Waiting for a change when the KV closes.
      await delay(20);
      t.kv.close();
      equal(await pending, DONE);
      equal(await w2.next(), DONE);
    },
  );

  Deno.test(
    name("watch() entries carry the decoded value types"),
    async () => {
      await using t = await target.open();
      const date = new Date(1_700_000_000_000);
      const w = watch(t.kv, [["v"]]);
      deepEqual(valuesOf(await w.chunk()), [null]);
      const value = { date, map: new Map([[1, "one"]]), bytes: new Uint8Array([1, 2]) };
      await t.kv.set(["v"], value);
      deepEqual(valuesOf(await w.chunk()), [value]);
      await t.kv.set(["v"], new Uint8Array([9]));
      deepEqual(valuesOf(await w.chunk()), [new Uint8Array([9])]);
      await w.cancel();
    },
  );
}

// ------------------------------------------------------------ SessionKv only

for (const driver of testDrivers) {
  const name = (what: string) => `[${driver}] SessionKv ${what}`;

  Deno.test(name("watch() sees a key expire soon after expireIn"), async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver });
      using kv = await store.openKv("bot", "s");
      const w = watch(kv as unknown as Deno.Kv, [["k"], ["stays"]]);
      deepEqual(valuesOf(await w.chunk()), [null, null]);
      await kv.set(["stays"], "s");
      deepEqual(valuesOf(await w.chunk()), [null, "s"]);
      const setAt = Date.now();
      await kv.set(["k"], 1, { expireIn: 100 });
      deepEqual(valuesOf(await w.chunk()), [1, "s"]);
      const gone = await w.chunk(1000);
      const after = Date.now() - setAt;
      deepEqual(valuesOf(gone), [null, "s"]);
      equal(gone[0]!.versionstamp, null);
      ok(after >= 100, `emitted ${after} ms after the set, before the expiry`);
      ok(after < 600, `emitted ${after} ms after the set`);
      await w.cancel();
    });
  });

  Deno.test(name("watch() sees commits made through other views and other stores"), async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver });
      await using other = new SessionStore({ root, driver });
      using kv = await store.openKv("bot", "s");
      using sibling = await store.openKv("bot", "s");
      using foreign = await other.openKv("bot", "s");
      const w = watch(kv as unknown as Deno.Kv, [["k"]]);
      deepEqual(valuesOf(await w.chunk()), [null]);
      const s1 = await sibling.set(["k"], "sibling");
      const c1 = await w.chunk();
      deepEqual(valuesOf(c1), ["sibling"]);
      equal(c1[0]!.versionstamp, s1.versionstamp);
      // Another connection: found by polling the change token.
      const s2 = await foreign.set(["k"], "foreign");
      const c2 = await w.chunk(1000);
      deepEqual(valuesOf(c2), ["foreign"]);
      equal(c2[0]!.versionstamp, s2.versionstamp);
      ok(STAMP_RE.test(s2.versionstamp));
      await foreign.delete(["k"]);
      deepEqual(valuesOf(await w.chunk(1000)), [null]);
      await w.cancel();
    });
  });

  Deno.test(name("watch() keeps working when the store evicts and reopens the file"), async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver, maxOpenSessions: 1 });
      using kv = await store.openKv("bot", "a");
      using b = await store.openKv("bot", "b");
      const w = watch(kv as unknown as Deno.Kv, [["k"]]);
      deepEqual(valuesOf(await w.chunk()), [null]);
      // Each use of session b takes the only open slot from session a.
      const pending = w.next(2000);
      for (let i = 0; i < 5; i++) {
        await b.set(["x"], i);
        await delay(30);
      }
      await kv.set(["k"], "after eviction");
      const got = await pending;
      ok(Array.isArray(got), "a chunk");
      deepEqual(valuesOf(got as Chunk), ["after eviction"]);
      await w.cancel();
    });
  });
}

Deno.test("SessionKv watch() stops polling once cancelled or its view closes", async () => {
  await withTempDir(async (root) => {
    const driver = countingDriver();
    await using store = new SessionStore({ root, driver });
    const kv = await store.openKv("bot", "s");
    const w = watch(kv as unknown as Deno.Kv, [["k"]]);
    deepEqual(valuesOf(await w.chunk()), [null]);
    const before = driver.polls;
    await w.quiet(QUIET_MS);
    ok(driver.polls > before, "a waiting watch polls for foreign commits");
    await w.cancel();
    await delay(50);
    const cancelled = driver.polls;
    await delay(QUIET_MS);
    equal(driver.polls, cancelled, "no poll after cancel()");

    const w2 = watch(kv as unknown as Deno.Kv, [["k"]]);
    deepEqual(valuesOf(await w2.chunk()), [null]);
    const pending = w2.next();
    await delay(50);
    kv.close();
    equal(await pending, DONE);
    const closed = driver.polls;
    await delay(QUIET_MS);
    equal(driver.polls, closed, "no poll after close()");
  });
});

Deno.test("SessionKv watch() of an expiring key leaves no timer after store.close()", async () => {
  // Relies on the test sanitizers: a leaked expiry or poll timer fails it.
  await withTempDir(async (root) => {
    const store = new SessionStore({ root });
    const kv = await store.openKv("bot", "s");
    await kv.set(["k"], 1, { expireIn: 60_000 });
    const w = watch(kv as unknown as Deno.Kv, [["k"]]);
    deepEqual(valuesOf(await w.chunk()), [1]);
    const pending = w.next();
    await delay(20);
    await store.close();
    equal(await pending, DONE);
  });
});
