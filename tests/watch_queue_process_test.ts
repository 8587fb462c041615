/**
 * Watches and queues across processes (API.md deliberate difference 4, and
 * queue durability): a watch in this process sees commits another Deno
 * process makes to the same session, a message enqueued by a process that was
 * SIGKILLed is delivered by a new store, and a message whose listener was
 * SIGKILLed mid-handler is delivered again once its 5 s claim lapses.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { testDrivers } from "./_drivers.ts";
import { spawnFixture, withTempDir } from "./_helpers.ts";
import { Inbox, valuesOf, WatchReader } from "./fixtures/watch_queue_util.ts";
import { SessionStore } from "../mod.ts";

// Deno 2.8+ leaves these sanitizers off by default: this suite is about not
// leaking timers, ops or resources, so turn them on for every test here.
Deno.test.sanitizer({ ops: true, resources: true });

/** How long a claimed message stays claimed without keepalive (src/queue.ts). */
const LEASE_MS = 5000;

/** Kills a child with SIGKILL and waits for it: nothing in it is closed cleanly. */
async function kill(child: { process: Deno.ChildProcess }): Promise<void> {
  child.process.kill("SIGKILL");
  const status = await child.process.status;
  equal(status.signal, "SIGKILL");
}

for (const driver of testDrivers) {
  const name = (what: string) => `[${driver}] ${what}`;

  Deno.test(name("a watch sees commits another process makes to the session"), async () => {
    await withTempDir(async (root) => {
      await using store = new SessionStore({ root, driver });
      using kv = await store.openKv("bot", "watched");
      await kv.set(["gone"], "here");
      const w = new WatchReader(
        kv.watch([["k"], ["k2"], ["gone"]]) as ReadableStream<Deno.KvEntryMaybe<unknown>[]>,
      );
      deepEqual(valuesOf(await w.chunk()), [null, null, "here"]);
      await using child = spawnFixture("watch_writer.ts", [root, driver, "5"]);
      const seen: unknown[] = [];
      const last = await w.until((c) => {
        seen.push(c[0]!.value);
        return c[1]!.value === "last";
      }, 10_000);
      const done = await child.waitFor("done ");
      deepEqual(valuesOf(last), ["last", "last", null]);
      equal(last[0]!.versionstamp, done.slice("done ".length));
      equal(last[1]!.versionstamp, last[0]!.versionstamp);
      // States may be merged, never reordered: the numbers only grow.
      const numbers = seen.filter((v) => typeof v === "number") as number[];
      deepEqual(numbers, [...numbers].sort((a, b) => a - b));
      equal(seen.at(-1), "last");
      equal((await child.process.status).code, 0);
      await w.cancel();
    });
  });

  Deno.test(
    name("a listener delivers a message another process enqueues while it waits"),
    async () => {
      await withTempDir(async (root) => {
        await using store = new SessionStore({ root, driver });
        using kv = await store.openKv("bot", "queued");
        const inbox = new Inbox();
        const listening = kv.listenQueue(inbox.handler);
        await using child = spawnFixture("queue_enqueue.ts", [root, driver, "0", "exit"]);
        await child.waitFor("enqueued ");
        const [delivery] = await inbox.waitFor(1, 3000);
        equal((delivery!.value as { from: number }).from, child.process.pid);
        equal((await child.process.status).code, 0);
        kv.close();
        await listening;
      });
    },
  );

  Deno.test(
    name("a message enqueued by a SIGKILLed process is delivered after a restart"),
    async () => {
      await withTempDir(async (root) => {
        const child = spawnFixture("queue_enqueue.ts", [root, driver, "500", "hold"]);
        const line = await child.waitFor("enqueued ");
        await kill(child);
        await child[Symbol.asyncDispose]();
        const enqueuedAt = Number(line.split(" ")[1]);

        await using store = new SessionStore({ root, driver });
        using kv = await store.openKv("bot", "queued");
        const inbox = new Inbox();
        const listening = kv.listenQueue(inbox.handler);
        const [delivery] = await inbox.waitFor(1, 3000);
        const deliveredAt = Date.now();
        deepEqual(delivery!.value, { from: child.process.pid, at: enqueuedAt });
        ok(deliveredAt - enqueuedAt >= 500, `delivered ${deliveredAt - enqueuedAt} ms after`);
        kv.close();
        await listening;
      });
    },
  );
}

Deno.test(
  `a message whose listener was SIGKILLed mid-handler is delivered again after the ${LEASE_MS} ms claim (${
    testDrivers.join(", ")
  })`,
  async () => {
    // The drivers run side by side: each waits out one claim.
    await Promise.all(testDrivers.map((driver) =>
      withTempDir(async (root) => {
        await using store = new SessionStore({ root, driver });
        {
          using kv = await store.openKv("bot", "queued");
          await kv.enqueue("crash-me");
        }
        const child = spawnFixture("queue_claim.ts", [root, driver]);
        const line = await child.waitFor("claimed ");
        await kill(child);
        await child[Symbol.asyncDispose]();
        const [, at, json] = line.split(" ");
        const claimedAt = Number(at);
        equal(JSON.parse(json!), "crash-me");

        using kv = await store.openKv("bot", "queued");
        const inbox = new Inbox();
        const listening = kv.listenQueue(inbox.handler);
        const [delivery] = await inbox.waitFor(1, LEASE_MS + 3000);
        const after = Date.now() - claimedAt;
        equal(delivery!.value, "crash-me");
        ok(after >= LEASE_MS - 100, `[${driver}] redelivered ${after} ms after the claim`);
        ok(after < LEASE_MS + 1500, `[${driver}] redelivered ${after} ms after the claim`);
        kv.close();
        await listening;
      })
    ));
  },
);
