import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { ERROR, INTERRUPT, TASKS } from "@langchain/langgraph-checkpoint";
import { Annotation, END, START, StateGraph } from "@langchain/langgraph";
import { type SessionKv, SessionStore } from "../mod.ts";
import { SessionCheckpointSaver } from "../langgraph.ts";
import { withTempDir } from "./_helpers.ts";
import { checkpointOf, dirBytes, loopMeta, step } from "./_langgraph_helpers.ts";

const thread = (thread_id: string, checkpoint_ns = "") => ({
  configurable: { thread_id, checkpoint_ns },
});

Deno.test("SessionCheckpointSaver returns pending writes ordered by task path, task id, index", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    const config = await saver.put(thread("t"), checkpointOf({}), loopMeta(0), {});
    // Stored out of order; code point order puts U+FFFF before U+1F600.
    await saver.putWrites(config, [["a", 1], ["b", 2]], "task-z", "~2");
    await saver.putWrites(config, [["c", 3]], "\u{1F600}", "~1");
    await saver.putWrites(config, [["d", 4]], "\uFFFF", "~1");
    await saver.putWrites(config, [["e", 5], [ERROR, "boom"]], "task-y", "~1");
    await saver.putWrites(config, [["input", 0]], "task-x");
    const tuple = await saver.getTuple(config);
    deepEqual(tuple?.pendingWrites, [
      ["task-x", "input", 0],
      ["task-y", ERROR, "boom"],
      ["task-y", "e", 5],
      ["\uFFFF", "d", 4],
      ["\u{1F600}", "c", 3],
      ["task-z", "a", 1],
      ["task-z", "b", 2],
    ]);
  });
});

Deno.test("SessionCheckpointSaver keeps a task's first regular write and replaces special ones", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    const config = await saver.put(thread("t"), checkpointOf({}), loopMeta(0), {});
    await saver.putWrites(config, [["out", "first"], [INTERRUPT, "ask"]], "task");
    await saver.putWrites(config, [["out", "second"], [INTERRUPT, "ask again"]], "task");
    await saver.putWrites(config, [["out", "x"], ["more", "new"]], "task");
    const tuple = await saver.getTuple(config);
    deepEqual(tuple?.pendingWrites, [
      ["task", INTERRUPT, "ask again"],
      ["task", "out", "first"],
      ["task", "more", "new"],
    ]);
  });
});

Deno.test("SessionCheckpointSaver stores and reads back a 5 MB checkpoint and a 5 MB write", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    const big = Array.from({ length: 50_000 }, (_, i) => `message ${i} `.padEnd(100, "."));
    const config = await saver.put(
      thread("big"),
      checkpointOf({ messages: big, small: 1 }),
      loopMeta(0),
      { messages: 1, small: 1 },
    );
    const blob = "x".repeat(5 * 1024 * 1024);
    await saver.putWrites(config, [["messages", blob]], "task");
    const tuple = await saver.getTuple(thread("big"));
    ok(JSON.stringify(tuple?.checkpoint.channel_values.messages).length > 5_000_000);
    deepEqual(tuple?.checkpoint.channel_values, { messages: big, small: 1 });
    equal((tuple?.pendingWrites?.[0]?.[2] as string).length, blob.length);
    // The next step carries the big channel over without writing it again.
    const before = await dirBytes((await first(store.sessions({ botId: "bot" }))).path);
    const next = checkpointOf({ messages: big, small: 2 }, { messages: 1, small: 2 });
    await saver.put(config, next, loopMeta(1), { small: 2 });
    const after = await dirBytes((await first(store.sessions({ botId: "bot" }))).path);
    ok(after - before < 64 * 1024, `grew by ${after - before} bytes`);
    deepEqual((await saver.getTuple(thread("big")))?.checkpoint.channel_values, {
      messages: big,
      small: 2,
    });
  });
});

async function first<T>(items: AsyncIterable<T>): Promise<T> {
  for await (const item of items) return item;
  throw new Error("No items");
}

/** A store whose views fail the `failAt`-th commit, as if the process died there. */
class CrashingStore extends SessionStore {
  commits = 0;
  failAt = Infinity;
  override async openKv(botId: string, sessionId: string): Promise<SessionKv> {
    const kv = await super.openKv(botId, sessionId);
    return new Proxy(kv, {
      get: (target, prop) => {
        const value = Reflect.get(target, prop, target);
        if (prop !== "atomic") return typeof value === "function" ? value.bind(target) : value;
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = () => {
            if (++this.commits === this.failAt) throw new Error("Simulated crash");
            return commit();
          };
          return op;
        };
      },
    });
  }
}

Deno.test("SessionCheckpointSaver never shows a checkpoint whose put failed midway", async () => {
  await withTempDir(async (root) => {
    await using store = new CrashingStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    const config = await saver.put(thread("t"), checkpointOf({ v: "old" }), loopMeta(0), { v: 1 });
    const big = "y".repeat(3 * 1024 * 1024); // needs several commits
    store.commits = 0;
    store.failAt = 3;
    await rejects(
      saver.put(config, checkpointOf({ v: big }, { v: 2 }), loopMeta(1), { v: 2 }),
      /Simulated crash/,
    );
    store.failAt = Infinity;
    const latest = await saver.getTuple(thread("t"));
    equal(latest?.checkpoint.id, config.configurable?.checkpoint_id);
    deepEqual(latest?.checkpoint.channel_values, { v: "old" });
    let count = 0;
    for await (const _ of saver.list(thread("t"))) count++;
    equal(count, 1);
  });
});

Deno.test("SessionCheckpointSaver writes 100 threads concurrently", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    await Promise.all(Array.from({ length: 100 }, async (_, t) => {
      let config = thread(`thread-${t}`) as
        | ReturnType<typeof thread>
        | Awaited<ReturnType<typeof saver.put>>;
      let previous;
      for (let n = 0; n < 5; n++) {
        ({ config, checkpoint: previous } = await step(saver, config, previous, { n, t }, n));
        await saver.putWrites(config, [["n", n + 1]], `task-${n}`);
      }
    }));
    const threads = new Set<string>();
    for await (const tuple of saver.list({}, { filter: { step: 4 } })) {
      const t = Number(String(tuple.config.configurable?.thread_id).slice("thread-".length));
      threads.add(String(t));
      deepEqual(tuple.checkpoint.channel_values, { n: 4, t });
      deepEqual(tuple.pendingWrites, [["task-4", "n", 5]]);
    }
    equal(threads.size, 100);
    let history = 0;
    for await (const _ of saver.list(thread("thread-42"))) history++;
    equal(history, 5);
  });
});

Deno.test("SessionCheckpointSaver resumes a thread after the store is reopened", async () => {
  await withTempDir(async (root) => {
    let config;
    {
      await using store = new SessionStore({ root });
      const saver = new SessionCheckpointSaver(store, { botId: "bot" });
      let previous;
      ({ config, checkpoint: previous } = await step(saver, thread("t"), undefined, {
        doc: "a long document",
        turn: 0,
      }, 0));
      ({ config } = await step(saver, config, previous, { turn: 1 }, 1));
    }
    await using store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    const latest = await saver.getTuple(thread("t"));
    deepEqual(latest?.config, config);
    deepEqual(latest?.checkpoint.channel_values, { doc: "a long document", turn: 1 });
    const { config: next } = await step(saver, latest!.config, latest!.checkpoint, { turn: 2 }, 2);
    deepEqual((await saver.getTuple(next))?.checkpoint.channel_values, {
      doc: "a long document",
      turn: 2,
    });
    const steps = [];
    for await (const tuple of saver.list(thread("t"))) steps.push(tuple.metadata?.step);
    deepEqual(steps, [2, 1, 0]);
  });
});

Deno.test("SessionCheckpointSaver grows by under 1 KB per step when only a small channel changes", async () => {
  await withTempDir(async (root) => {
    const doc = Array.from({ length: 400 }, (_, i) => `line ${i} of a large context`).join("\n");
    const sizeAfter = async (steps: number, from: number, state: {
      config: ReturnType<typeof thread> | Awaited<ReturnType<SessionCheckpointSaver["put"]>>;
      previous?: Awaited<ReturnType<typeof step>>["checkpoint"];
    }) => {
      // Closing the store checkpoints the WAL into the database file.
      await using store = new SessionStore({ root });
      const saver = new SessionCheckpointSaver(store, { botId: "bot" });
      for (let n = from; n < from + steps; n++) {
        const changed = n === 0 ? { doc, counter: n } : { counter: n };
        const next = await step(saver, state.config, state.previous, changed, n);
        await saver.putWrites(next.config, [["counter", n + 1]], "count");
        state.config = next.config;
        state.previous = next.checkpoint;
      }
      const path = (await first(store.sessions({ botId: "bot" }))).path;
      await store.close();
      return await dirBytes(path);
    };
    const state = { config: thread("t") } as Parameters<typeof sizeAfter>[2];
    const base = await sizeAfter(100, 0, state);
    const end = await sizeAfter(1000, 100, state);
    const perStep = (end - base) / 1000;
    console.log(`bytes on disk per step: ${perStep} (doc channel: ${doc.length} bytes)`);
    ok(perStep < 1024, `${perStep} bytes per step`);
    await using store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    deepEqual((await saver.getTuple(thread("t")))?.checkpoint.channel_values, {
      doc,
      counter: 1099,
    });
  });
});

Deno.test("SessionCheckpointSaver keeps both branches when a fork reuses a channel version", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    const root1 = await step(saver, thread("t"), undefined, { x: "a", y: "same" }, 0);
    const main = await step(saver, root1.config, root1.checkpoint, { x: "b" }, 1);
    const fork = await step(saver, root1.config, root1.checkpoint, { x: "c" }, 1);
    equal(main.checkpoint.channel_versions.x, fork.checkpoint.channel_versions.x);
    const forkChild = await step(saver, fork.config, fork.checkpoint, {}, 2);
    deepEqual((await saver.getTuple(main.config))?.checkpoint.channel_values, {
      x: "b",
      y: "same",
    });
    deepEqual((await saver.getTuple(fork.config))?.checkpoint.channel_values, {
      x: "c",
      y: "same",
    });
    deepEqual((await saver.getTuple(forkChild.config))?.checkpoint.channel_values, {
      x: "c",
      y: "same",
    });
  });
});

Deno.test("SessionCheckpointSaver lists across the bot's sessions only, with filter, before and limit", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    const other = new SessionCheckpointSaver(store, { botId: "other-bot" });
    await other.put(thread("o"), checkpointOf({}), loopMeta(0), {});
    const ids: string[] = [];
    for (const t of ["a", "b"]) {
      let config = thread(t) as Awaited<ReturnType<typeof saver.put>>;
      for (let n = 0; n < 3; n++) {
        const checkpoint = checkpointOf({});
        config = await saver.put(config, checkpoint, loopMeta(n), {});
        if (t === "a") ids.push(checkpoint.id);
      }
    }
    const count = async (config: object, options?: object) => {
      let n = 0;
      for await (const _ of saver.list(config, options)) n++;
      return n;
    };
    equal(await count({}), 6);
    equal(await count({}, { filter: { step: 1 } }), 2);
    equal(await count({}, { limit: 4 }), 4);
    equal(await count(thread("a"), { before: { configurable: { checkpoint_id: ids[2] } } }), 2);
    equal(await count({ configurable: { thread_id: "a" } }, { filter: { source: "input" } }), 0);
    equal(await count({ configurable: { thread_id: "a", checkpoint_id: ids[1] } }), 1);
  });
});

Deno.test("SessionCheckpointSaver.deleteThread() removes the session and leaves other keys of other sessions", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    await saver.put(thread("gone"), checkpointOf({ x: 1 }), loopMeta(0), { x: 1 });
    await saver.put(thread("kept"), checkpointOf({ x: 2 }), loopMeta(0), { x: 1 });
    {
      using kv = await store.openKv("bot", "kept");
      await kv.set(["app", "note"], "mine");
    }
    await saver.deleteThread("gone");
    const left = [];
    for await (const info of store.sessions({ botId: "bot" })) left.push(info.sessionId);
    deepEqual(left, ["kept"]);
    using kv = await store.openKv("bot", "kept");
    equal((await kv.get(["app", "note"])).value, "mine");
    equal((await saver.getTuple(thread("kept")))?.checkpoint.channel_values.x, 2);
  });
});

Deno.test("SessionCheckpointSaver migrates pending sends of checkpoints before format 4", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    const parent = { ...checkpointOf({}), v: 1 };
    const config = await saver.put(thread("t"), parent, loopMeta(0), {});
    await saver.putWrites(config, [[TASKS, "send-2"]], "task-b");
    await saver.putWrites(config, [[TASKS, "send-1"]], "task-a");
    const child = { ...checkpointOf({}), v: 1 };
    const childConfig = await saver.put(config, child, loopMeta(1), {});
    const tuple = await saver.getTuple(childConfig);
    deepEqual(tuple?.checkpoint.channel_values, { [TASKS]: ["send-1", "send-2"] });
    equal(tuple?.checkpoint.channel_versions[TASKS], 1);
  });
});

Deno.test("SessionCheckpointSaver validates its arguments", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    throws(() => new SessionCheckpointSaver(store, { botId: "" }), TypeError);
    throws(() => new SessionCheckpointSaver(store, { botId: "b", chunkBytes: 10 }), RangeError);
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    await rejects(saver.put({}, checkpointOf({}), loopMeta(0), {}), TypeError);
    await rejects(saver.putWrites(thread("t"), [["a", 1]], "task"), TypeError);
    equal(await saver.getTuple({ configurable: {} }), undefined);
  });
});

Deno.test("SessionCheckpointSaver keeps channels named __proto__ and constructor as own keys", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bot" });
    const names = ["__proto__", "constructor", "plain"];
    const values = Object.fromEntries(names.map((name, i) => [name, `value ${i}`]));
    const versions = Object.fromEntries(names.map((name) => [name, 1]));
    const first = await saver.put(
      thread("t"),
      checkpointOf(values, versions),
      loopMeta(0),
      versions,
    );
    const next = checkpointOf(values, { ...versions, plain: 2 });
    // A new saver reads the parent's references from disk.
    const fresh = new SessionCheckpointSaver(store, { botId: "bot" });
    await fresh.put(first, next, loopMeta(1), { plain: 2 });
    const tuple = await fresh.getTuple(thread("t"));
    deepEqual(Object.keys(tuple?.checkpoint.channel_values ?? {}).sort(), [...names].sort());
    for (const [i, name] of names.entries()) {
      ok(Object.hasOwn(tuple!.checkpoint.channel_values, name));
      equal(tuple!.checkpoint.channel_values[name], `value ${i}`);
    }
  });
});

Deno.test("SessionCheckpointSaver keeps a LangGraph fork and its original apart although their versions collide", async () => {
  await withTempDir(async (root) => {
    await using store = new SessionStore({ root });
    const checkpointer = new SessionCheckpointSaver(store, { botId: "bot" });
    const State = Annotation.Root({ x: Annotation<string> });
    const graph = new StateGraph(State)
      .addNode("shout", (state) => ({ x: `${state.x}!` }))
      .addEdge(START, "shout")
      .addEdge("shout", END)
      .compile({ checkpointer });
    const config = { configurable: { thread_id: "t" } };
    await graph.invoke({ x: "a" }, config);
    await graph.invoke({ x: "b" }, config);
    const history = [];
    for await (const snapshot of graph.getStateHistory(config)) history.push(snapshot);
    const start = history.find((s) => s.metadata?.step === 0)!;
    const shouted = history.find((s) => s.metadata?.step === 1)!;
    // Forking from step 0 gives x the version step 1 gave it on the main branch.
    const fork = await graph.updateState(start.config, { x: "fork" });
    const [forkTuple, mainTuple] = await Promise.all([
      checkpointer.getTuple(fork),
      checkpointer.getTuple(shouted.config),
    ]);
    equal(forkTuple?.checkpoint.channel_versions.x, mainTuple?.checkpoint.channel_versions.x);
    equal(forkTuple?.checkpoint.channel_values.x, "fork");
    equal(mainTuple?.checkpoint.channel_values.x, "a!");
    // Resuming the fork runs on from the fork's value.
    equal((await graph.invoke(null, fork)).x, "fork!");
    equal((await graph.getState(config)).values.x, "fork!");
    equal((await graph.getState(shouted.config)).values.x, "a!");
  });
});
