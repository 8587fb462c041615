/**
 * Queues (spec §2.10, §6 rows 8, 38–42 and 48): `enqueue` is a commit,
 * `atomic().enqueue` only enqueues when the commit succeeds, delays are
 * respected, failed deliveries are retried per `backoffSchedule` and then
 * written to `keysIfUndelivered`, payloads are structured clones, and option
 * errors carry Deno KV's messages. The same source runs against real Deno KV
 * and every SessionKv target. Deno KV's local queue polls with up to ~100 ms
 * of jitter and orders messages that are ready in the same millisecond at
 * random, so the shared assertions leave room for that; the SessionKv-only
 * part pins down what SessionKv promises beyond it (FIFO, durability across
 * restarts, cleanup, no busy polling).
 */
import { AssertionError, deepEqual, equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { kvTargets } from "./_kv_targets.ts";
import { testDrivers } from "./_drivers.ts";
import { withTempDir } from "./_helpers.ts";
import { assertRejectsExact, assertThrowsExact, stampOf, versionGap } from "./_kv_helpers.ts";
import { exists, sessionDir } from "./fixtures/cleanup_util.ts";
import { countingDriver, delay, Inbox, WatchReader } from "./fixtures/watch_queue_util.ts";
import { SessionStore } from "../mod.ts";

// Deno 2.8+ leaves these sanitizers off by default: this suite is about not
// leaking timers, ops or resources, so turn them on for every test here.
Deno.test.sanitizer({ ops: true, resources: true });

/** Extra delivery latency a shared assertion allows (Deno KV polls with jitter). */
const SLACK_MS = 250;
/** How much earlier than scheduled a delivery may be seen (clock rounding). */
const EARLY_MS = 5;

type Options = Parameters<Deno.Kv["enqueue"]>[1];

/** Every option error of `enqueue`, with Deno KV's exact message. */
const BAD_OPTIONS: [Options, string][] = [
  [{ delay: -1 }, "Delay must be >= 0: received -1"],
  [{ delay: -Infinity }, "Delay must be >= 0: received -Infinity"],
  [{ delay: NaN }, "Delay cannot be NaN"],
  [{ delay: 2_592_000_001 }, "Delay cannot be greater than 30 days: received 2592000001"],
  [{ delay: Infinity }, "Delay cannot be greater than 30 days: received Infinity"],
  [{ backoffSchedule: [1, 2, 3, 4, 5, 6] }, "Invalid backoffSchedule, max 5 intervals allowed"],
  [{ backoffSchedule: [-1] }, "Invalid backoffSchedule, interval at index 0 is invalid"],
  [{ backoffSchedule: [1, 3_600_001] }, "Invalid backoffSchedule, interval at index 1 is invalid"],
  [{ backoffSchedule: [0, 1, NaN] }, "Invalid backoffSchedule, interval at index 2 is invalid"],
  // The count is checked before the intervals, the delay before both.
  [{ backoffSchedule: [-1, 2, 3, 4, 5, 6] }, "Invalid backoffSchedule, max 5 intervals allowed"],
  [{ delay: -1, backoffSchedule: [-1] }, "Delay must be >= 0: received -1"],
];

/** Options Deno KV accepts at their limits. */
const GOOD_OPTIONS: Options[] = [
  { delay: 0 },
  { delay: 1.5 },
  { delay: 2_592_000_000 },
  { backoffSchedule: [] },
  { backoffSchedule: [0, 1, 2, 3, 3_600_000] },
  { backoffSchedule: [1.5] },
  { keysIfUndelivered: [] },
  { keysIfUndelivered: Array.from({ length: 11 }, (_, i) => ["dlq", i]) },
];

/**
 * Polls until every key exists (Deno KV's watch does not report writes to
 * keysIfUndelivered); fails after `ms`.
 */
async function waitForKeys(
  kv: Deno.Kv,
  keys: Deno.KvKey[],
  ms: number,
): Promise<Deno.KvEntryMaybe<unknown>[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const entries = await kv.getMany(keys);
    if (entries.every((e) => e.versionstamp !== null)) return entries;
    if (Date.now() > deadline) {
      throw new AssertionError({ message: `keys not all written within ${ms} ms` });
    }
    await delay(10);
  }
}

for (const target of kvTargets) {
  const name = (what: string) => `[${target.id}] ${what}`;

  Deno.test(name("enqueue() is a commit: it returns a versionstamp and advances it"), async () => {
    await using t = await target.open();
    const before = stampOf(await t.kv.set(["a"], 1));
    const result = await t.kv.enqueue("m");
    deepEqual(Object.keys(result), ["ok", "versionstamp"]);
    const stamp = stampOf(result);
    ok(versionGap(before, stamp) >= 1n, `${before} -> ${stamp}`);
    const after = stampOf(await t.kv.set(["a"], 2));
    ok(versionGap(stamp, after) >= 1n, `${stamp} -> ${after}`);
    const atomic = stampOf(await t.kv.atomic().enqueue("x").enqueue("y").commit());
    ok(versionGap(after, atomic) >= 1n);
  });

  Deno.test(name("atomic().enqueue() with a failing check enqueues nothing"), async () => {
    await using t = await target.open();
    const first = stampOf(await t.kv.set(["guard"], 1));
    await t.kv.set(["guard"], 2);
    const failed = await t.kv.atomic()
      .check({ key: ["guard"], versionstamp: first })
      .enqueue("never")
      .commit();
    deepEqual(failed, { ok: false });
    const inbox = new Inbox();
    const listening = t.kv.listenQueue(inbox.handler);
    // A later message, due after anything the failed commit could have
    // queued: once it is delivered, an enqueued "never" would have been too.
    await t.kv.atomic()
      .check({ key: ["guard"], versionstamp: null }) // fails too
      .enqueue("never either")
      .commit();
    await t.kv.enqueue("marker", { delay: 20 });
    await inbox.waitFor(1);
    await delay(50);
    deepEqual(inbox.values, ["marker"]);
    t.kv.close();
    await listening;
  });

  Deno.test(name("atomic().enqueue() with passing checks enqueues with the commit"), async () => {
    await using t = await target.open();
    const inbox = new Inbox();
    const listening = t.kv.listenQueue(inbox.handler);
    const result = await t.kv.atomic()
      .check({ key: ["guard"], versionstamp: null })
      .set(["guard"], 1)
      .enqueue("one")
      .enqueue("two")
      .commit();
    ok(result.ok);
    await inbox.waitFor(2);
    // Ready in the same millisecond: Deno KV delivers them in random order.
    deepEqual([...inbox.values].sort(), ["one", "two"]);
    t.kv.close();
    await listening;
  });

  Deno.test(name("a message enqueued before listenQueue() is delivered to it"), async () => {
    await using t = await target.open();
    await t.kv.enqueue({ hello: "world" });
    const inbox = new Inbox();
    const listening = t.kv.listenQueue(inbox.handler);
    await inbox.waitFor(1);
    deepEqual(inbox.values, [{ hello: "world" }]);
    t.kv.close();
    await listening;
  });

  Deno.test(name("a delayed message arrives no earlier than its delay"), async () => {
    await using t = await target.open();
    const inbox = new Inbox();
    const listening = t.kv.listenQueue(inbox.handler);
    const start = performance.now();
    await t.kv.enqueue("late", { delay: 300 });
    await t.kv.enqueue("early", { delay: 50 });
    const [early, late] = await inbox.waitFor(2, 300 + 2 * SLACK_MS);
    equal(early!.value, "early");
    equal(late!.value, "late");
    const lateAfter = late!.at - start;
    const earlyAfter = early!.at - start;
    ok(earlyAfter >= 50 - EARLY_MS, `"early" arrived after ${earlyAfter} ms`);
    ok(lateAfter >= 300 - EARLY_MS, `"late" arrived after ${lateAfter} ms`);
    ok(lateAfter < 300 + SLACK_MS, `"late" arrived after ${lateAfter} ms`);
    if (!target.oracle) {
      // SessionKv sleeps until the message is due: no polling jitter.
      ok(lateAfter < 300 + 60, `"late" arrived after ${lateAfter} ms`);
      ok(earlyAfter < 50 + 60, `"early" arrived after ${earlyAfter} ms`);
    }
    t.kv.close();
    await listening;
  });

  Deno.test(name("a failing handler is retried per backoffSchedule"), async () => {
    await using t = await target.open();
    const inbox = new Inbox();
    inbox.fail = () => true;
    const listening = t.kv.listenQueue(inbox.handler);
    await t.kv.enqueue("flaky", { backoffSchedule: [100, 200] });
    const attempts = await inbox.waitFor(3, 300 + 3 * SLACK_MS);
    await delay(200 + SLACK_MS); // No fourth attempt comes.
    equal(inbox.deliveries.length, 3, `attempts: ${inbox.deliveries.length}`);
    deepEqual(inbox.values, ["flaky", "flaky", "flaky"]);
    const gaps = [attempts[1]!.at - attempts[0]!.at, attempts[2]!.at - attempts[1]!.at];
    const slack = target.oracle ? SLACK_MS : 80;
    for (const [i, wanted] of [100, 200].entries()) {
      ok(gaps[i]! >= wanted - EARLY_MS, `gap ${i}: ${gaps[i]} ms, wanted ${wanted}`);
      ok(gaps[i]! < wanted + slack, `gap ${i}: ${gaps[i]} ms, wanted ${wanted}`);
    }
    t.kv.close();
    await listening;
  });

  Deno.test(name("a handler that fails once is not called again after it succeeds"), async () => {
    await using t = await target.open();
    const inbox = new Inbox();
    inbox.fail = (_, attempt) => attempt === 1;
    const listening = t.kv.listenQueue(inbox.handler);
    await t.kv.enqueue("once", { backoffSchedule: [50, 50, 50], keysIfUndelivered: [["dlq"]] });
    await inbox.waitFor(2, 50 + 2 * SLACK_MS);
    await delay(50 + SLACK_MS);
    equal(inbox.deliveries.length, 2);
    equal((await t.kv.get(["dlq"])).versionstamp, null, "not written to keysIfUndelivered");
    t.kv.close();
    await listening;
  });

  Deno.test(
    name("after its last retry a message is set on every keysIfUndelivered key in one commit"),
    async () => {
      await using t = await target.open();
      const inbox = new Inbox();
      inbox.fail = () => true;
      const keys = [["dlq", 1], ["dlq", "two"]];
      const w = new WatchReader(t.kv.watch(keys));
      equal((await w.chunk()).length, 2);
      const listening = t.kv.listenQueue(inbox.handler);
      const value = { id: 7, at: new Date(5) };
      const enqueued = stampOf(
        await t.kv.enqueue(value, { backoffSchedule: [50], keysIfUndelivered: keys }),
      );
      const entries = await waitForKeys(t.kv, keys, 50 + 3 * SLACK_MS);
      equal(inbox.deliveries.length, 2, "one attempt and one retry");
      deepEqual(entries.map((e) => e.key), keys);
      deepEqual(entries.map((e) => e.value), [value, value]);
      equal(entries[0]!.versionstamp, entries[1]!.versionstamp);
      ok(versionGap(enqueued, entries[0]!.versionstamp!) >= 1n, "a new commit");
      if (!target.oracle) {
        // SessionKv's watch sees the write (Deno KV's does not notify watchers of it).
        deepEqual(await w.chunk(), entries);
      }
      await w.cancel();
      t.kv.close();
      await listening;
    },
  );

  Deno.test(
    name("backoffSchedule: [] sends a failed message straight to keysIfUndelivered"),
    async () => {
      await using t = await target.open();
      const inbox = new Inbox();
      inbox.fail = () => true;
      const w = new WatchReader(t.kv.watch([["dead"]]));
      equal((await w.chunk())[0]!.versionstamp, null);
      const listening = t.kv.listenQueue(inbox.handler);
      await t.kv.enqueue("letter", { backoffSchedule: [], keysIfUndelivered: [["dead"]] });
      const [entry] = await waitForKeys(t.kv, [["dead"]], 3 * SLACK_MS);
      equal(entry!.value, "letter");
      if (!target.oracle) deepEqual(await w.chunk(), [entry]);
      await delay(100);
      equal(inbox.deliveries.length, 1, "no retry");
      await w.cancel();
      t.kv.close();
      await listening;
    },
  );

  Deno.test(
    name("queued payloads are structured clones (Date, Map, Uint8Array, ...)"),
    async () => {
      await using t = await target.open();
      const inbox = new Inbox();
      const listening = t.kv.listenQueue(inbox.handler);
      const payload = {
        date: new Date(1_700_000_000_123),
        map: new Map<unknown, unknown>([["k", 1], [2, new Set([3n])]]),
        bytes: new Uint8Array([0, 1, 255]),
        nested: { list: [1, "two", null, undefined, -0], big: 2n ** 70n },
        regexp: /ab+c/gi,
      };
      const messages = [payload, new Uint8Array([9, 8, 7]), 42n, null, undefined, "text"];
      // Different due times keep the order deterministic for Deno KV too.
      for (const [i, m] of messages.entries()) await t.kv.enqueue(m, { delay: i * 20 });
      await inbox.waitFor(messages.length, 1000 + SLACK_MS);
      deepEqual(inbox.values, messages);
      const [first, second] = inbox.values as [typeof payload, Uint8Array];
      ok(first.date instanceof Date);
      ok(first.map instanceof Map);
      ok(first.bytes instanceof Uint8Array);
      ok(second instanceof Uint8Array);
      t.kv.close();
      await listening;
    },
  );

  Deno.test(name("enqueue() rejects bad options with Deno KV's messages"), async () => {
    await using t = await target.open();
    for (const [options, message] of BAD_OPTIONS) {
      await assertRejectsExact(() => t.kv.enqueue("m", options), "TypeError", message);
    }
    for (const options of GOOD_OPTIONS) stampOf(await t.kv.enqueue("m", options));
  });

  Deno.test(name("atomic().enqueue() throws bad options synchronously"), async () => {
    await using t = await target.open();
    for (const [options, message] of BAD_OPTIONS) {
      assertThrowsExact(() => t.kv.atomic().enqueue("m", options), "TypeError", message);
    }
    for (const options of GOOD_OPTIONS) {
      stampOf(await t.kv.atomic().enqueue("m", options).commit());
    }
  });

  Deno.test(name("enqueue() rejects an invalid keysIfUndelivered key at commit"), async () => {
    await using t = await target.open();
    const bad = { keysIfUndelivered: [["ok"], [null as unknown as string]] };
    await assertRejectsExact(
      () => t.kv.enqueue("m", bad),
      "TypeError",
      "expected string, number, bigint, ArrayBufferView, boolean",
    );
    const op = t.kv.atomic().enqueue("m", bad); // The builder accepts it.
    await assertRejectsExact(
      () => op.commit(),
      "TypeError",
      "expected string, number, bigint, ArrayBufferView, boolean",
    );
  });

  Deno.test(name("an enqueue payload is at most 65536 serialised bytes"), async () => {
    await using t = await target.open();
    const message = "enqueue payload too large (max 65536 bytes)";
    // A one-byte string serialises with 6 bytes of framing at this size.
    stampOf(await t.kv.enqueue("x".repeat(65530)));
    await assertRejectsExact(() => t.kv.enqueue("x".repeat(65531)), "TypeError", message);
    await assertRejectsExact(() => t.kv.enqueue(new Uint8Array(65536)), "TypeError", message);
    const op = t.kv.atomic().enqueue(new Uint8Array(70000)); // The builder accepts it.
    await assertRejectsExact(() => op.commit(), "TypeError", message);
    // Nothing of the failed commits was written.
    await assertRejectsExact(
      () => t.kv.atomic().set(["a"], 1).enqueue("y".repeat(70000)).commit(),
      "TypeError",
      message,
    );
    equal((await t.kv.get(["a"])).versionstamp, null);
  });

  Deno.test(name("enqueue() of an uncloneable value fails like set()"), async () => {
    await using t = await target.open();
    const fn = () => 1;
    await assertRejectsExact(() => t.kv.enqueue(fn), "TypeError", "()=>1 could not be cloned.");
    assertThrowsExact(() => t.kv.atomic().enqueue(fn), "TypeError", "()=>1 could not be cloned.");
  });

  Deno.test(name("listenQueue() resolves after close()"), async () => {
    await using t = await target.open();
    const listening = t.kv.listenQueue(() => {});
    let settled = false;
    listening.then(() => settled = true);
    await delay(50);
    equal(settled, false, "pending while open");
    t.kv.close();
    equal(await listening, undefined);
  });

  Deno.test(
    name("listenQueue() after close() rejects with Error 'Queue already closed'"),
    async () => {
      await using t = await target.open();
      t.kv.close();
      await assertRejectsExact(() => t.kv.listenQueue(() => {}), "Error", "Queue already closed");
    },
  );
}

// ------------------------------------------------------------ SessionKv only

/** The `queue.pending` marker of session ("bot", "s"). */
const marker = (root: string) => join(sessionDir(root, "bot", "s"), "queue.pending");

for (const driver of testDrivers) {
  const name = (what: string) => `[${driver}] SessionKv ${what}`;

  Deno.test(name("delivers messages ready at the same time in FIFO order"), async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver });
      using kv = await store.openKv("bot", "s");
      const expected: string[] = [];
      // Queued before anyone listens, so all are ready when listening starts.
      const atomic = kv.atomic();
      for (let i = 0; i < 10; i++) {
        atomic.enqueue(`atomic-${i}`);
        expected.push(`atomic-${i}`);
      }
      await atomic.commit();
      for (let i = 0; i < 10; i++) {
        await kv.enqueue(`single-${i}`);
        expected.push(`single-${i}`);
      }
      const inbox = new Inbox();
      const listening = kv.listenQueue(inbox.handler);
      await inbox.waitFor(expected.length);
      deepEqual(inbox.values, expected);
      kv.close();
      await listening;
    });
  });

  Deno.test(name("queued messages survive closing and reopening the store"), async () => {
    await withTempDir(async (root) => {
      const first = new SessionStore({ root, driver });
      const kv = await first.openKv("bot", "s");
      const enqueuedAt = performance.now();
      await kv.enqueue({ remind: "later" }, { delay: 300 });
      await kv.enqueue("now");
      kv.close();
      await first.close();

      await using second = new SessionStore({ root, driver });
      using kv2 = await second.openKv("bot", "s");
      const inbox = new Inbox();
      const listening = kv2.listenQueue(inbox.handler);
      const [now, later] = await inbox.waitFor(2, 1000);
      deepEqual(now!.value, "now");
      deepEqual(later!.value, { remind: "later" });
      ok(later!.at - enqueuedAt >= 300 - EARLY_MS, `${later!.at - enqueuedAt} ms`);
      kv2.close();
      await listening;
    });
  });

  Deno.test(
    name("a session with pending messages is kept by cleanup until its queue is empty"),
    async () => {
      await withTempDir(async (root) => {
        await using store = new SessionStore({ root, driver });
        const kv = await store.openKv("bot", "s");
        await kv.enqueue("pending");
        kv.close();
        ok(await exists(marker(root)), "queue.pending exists");
        await delay(20);
        let report = await store.cleanup({ olderThanMs: 0 });
        equal(report.deleted, 0, "kept while a message is pending");
        ok(await exists(sessionDir(root, "bot", "s")));

        const kv2 = await store.openKv("bot", "s");
        const inbox = new Inbox();
        const listening = kv2.listenQueue(inbox.handler);
        await inbox.waitFor(1);
        // The delivery is acknowledged after the handler returns.
        for (let i = 0; i < 50 && await exists(marker(root)); i++) await delay(10);
        equal(await exists(marker(root)), false, "queue.pending removed once empty");
        kv2.close();
        await listening;
        await delay(20);
        report = await store.cleanup({ olderThanMs: 0 });
        equal(report.deleted, 1, "deleted once idle with an empty queue");
        equal(await exists(sessionDir(root, "bot", "s")), false);
      });
    },
  );

  Deno.test(
    name("a message is acknowledged when its view closes right after delivery"),
    async () => {
      await withTempDir(async (root) => {
        await using store = new SessionStore({ root, driver });
        const kv = await store.openKv("bot", "s");
        await kv.enqueue("once");
        const inbox = new Inbox();
        const listening = kv.listenQueue(inbox.handler);
        await inbox.waitFor(1);
        kv.close(); // The handler has returned; listenQueue finishes the delivery.
        await listening;
        equal(await exists(marker(root)), false, "the delivered message left the queue");
        using again = await store.openKv("bot", "s");
        const inbox2 = new Inbox();
        const listening2 = again.listenQueue(inbox2.handler);
        await delay(300);
        deepEqual(inbox2.values, [], "not delivered twice");
        again.close();
        await listening2;
      });
    },
  );

  Deno.test(
    name("a message whose handler finishes after close() is acknowledged, not redelivered"),
    async () => {
      await withTempDir(async (root) => {
        await using store = new SessionStore({ root, driver });
        const kv = await store.openKv("bot", "s");
        await kv.enqueue("handled");
        const called = Promise.withResolvers<void>();
        const gate = Promise.withResolvers<void>();
        const listening = kv.listenQueue(async () => {
          called.resolve();
          await gate.promise;
        });
        await called.promise;
        kv.close(); // While the handler runs; listenQueue waits for it.
        gate.resolve();
        await listening;
        // The handler succeeded, so the message must have left the queue
        // (otherwise it is delivered again once its claim lapses).
        equal(await exists(marker(root)), false, "queue.pending still present");
        await delay(20);
        const report = await store.cleanup({ olderThanMs: 0 });
        equal(report.deleted, 1, "the session is idle with an empty queue");
      });
    },
  );

  Deno.test(name("messages enqueued by another store in this process are delivered"), async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver });
      await using other = new SessionStore({ root, driver });
      using kv = await store.openKv("bot", "s");
      using foreign = await other.openKv("bot", "s");
      const inbox = new Inbox();
      const listening = kv.listenQueue(inbox.handler);
      await delay(50); // The listener is idle when the message comes.
      await foreign.enqueue("from another connection");
      await inbox.waitFor(1, 1000);
      deepEqual(inbox.values, ["from another connection"]);
      kv.close();
      await listening;
    });
  });
}

Deno.test("SessionKv listenQueue() sleeps while waiting for a delayed message", async () => {
  await withTempDir(async (root) => {
    const driver = countingDriver();
    await using store = new SessionStore({ root, driver });
    using kv = await store.openKv("bot", "s");
    const inbox = new Inbox();
    const listening = kv.listenQueue(inbox.handler);
    await kv.enqueue("due", { delay: 1000 });
    const before = driver.polls;
    await inbox.waitFor(1, 1500);
    const polls = driver.polls - before;
    // Polling for foreign commits every ~200 ms makes about 5 reads in 1 s.
    ok(polls <= 15, `${polls} change-token reads while waiting 1 s`);
    kv.close();
    await listening;
  });
});

Deno.test("SessionKv listenQueue() retries per backoffSchedule while other messages wait", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    using kv = await store.openKv("bot", "s");
    const inbox = new Inbox();
    inbox.fail = (value, attempt) => value === "flaky" && attempt < 3;
    // The handler fails a while after it was called, when the listener
    // already waits for the next due message.
    const listening = kv.listenQueue(async (value) => {
      await delay(20);
      inbox.handler(value);
    });
    await kv.enqueue("later", { delay: 2000 });
    const start = performance.now();
    await kv.enqueue("flaky", { backoffSchedule: [50, 50] });
    await inbox.waitFor(3, 1000);
    const took = inbox.deliveries[2]!.at - start;
    ok(took < 3 * 20 + 50 + 50 + 150, `third attempt after ${took} ms`);
    kv.close();
    await listening;
  });
});

Deno.test("SessionKv listenQueue() leaves no timer behind after store.close()", async () => {
  // Relies on the test sanitizers: a leaked poll, keepalive or delay timer fails it.
  await withTempDir(async (root) => {
    const store = new SessionStore({ root });
    const kv = await store.openKv("bot", "s");
    const slow = Promise.withResolvers<void>();
    const inbox = new Inbox();
    const listening = kv.listenQueue(async (value) => {
      inbox.handler(value);
      if (value === "slow") await slow.promise;
    });
    const w = new WatchReader(kv.watch([["k"]]));
    await w.chunk();
    await kv.enqueue("later", { delay: 60_000 });
    await kv.enqueue("slow");
    await inbox.waitFor(1);
    const pending = w.next();
    const closing = store.close();
    slow.resolve();
    await closing;
    await listening;
    equal(typeof (await pending), "symbol", "the watch ended");
  });
});
