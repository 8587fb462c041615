/**
 * `SessionCheckpointSaver` throughput: `put` + `getTuple` pairs for a
 * checkpoint of 20 chat messages, beside LangGraph's in-memory `MemorySaver`
 * (the baseline: no storage at all). Also prints the bytes on disk per step,
 * for a step that rewrites the messages and for a step where only a counter
 * changes. `bench/langgraph_upstream_node.mjs` measures the upstream
 * `SqliteSaver` on Node the same way.
 *
 * Run: `deno task bench` or `deno bench -A bench/langgraph_bench.ts`.
 */
import { MemorySaver } from "@langchain/langgraph-checkpoint";
import { join } from "node:path";
import { SessionStore } from "../mod.ts";
import { SessionCheckpointSaver } from "../langgraph.ts";
import { Steps } from "./_langgraph_workload.ts";

const dir = await Deno.makeTempDir({ prefix: "sessionkv-lg-bench-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

async function dirBytes(path: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(path)) {
    if (e.isFile) total += (await Deno.stat(join(path, e.name))).size;
  }
  return total;
}

/** Bytes on disk per step over `steps` steps of one thread, after `warm` steps. */
async function bytesPerStep(changed: string[], steps = 500, warm = 50): Promise<number> {
  const root = await Deno.makeTempDir({ dir });
  let loop: Steps | undefined;
  const run = async (count: number) => {
    const store = new SessionStore({ root });
    const saver = new SessionCheckpointSaver(store, { botId: "bench" });
    loop ??= new Steps(saver, "bytes", Infinity);
    loop.saver = saver;
    for (let i = 0; i < count; i++) await loop.put(changed);
    let path = "";
    for await (const info of store.sessions({ botId: "bench" })) path = info.path;
    await store.close(); // checkpoints the WAL into the database file
    return await dirBytes(path);
  };
  const before = await run(warm);
  const after = await run(steps);
  return Math.round((after - before) / steps);
}

/** Runs the upstream SqliteSaver bench on Node when `deno task bench:upstream` installed it. */
async function upstream(): Promise<void> {
  const installed = new URL("./upstream/node_modules/better-sqlite3/", import.meta.url);
  if (!(await Deno.stat(installed).then(() => true, () => false))) {
    console.log("SqliteSaver (Node): not installed, run `deno task bench:upstream` once");
    return;
  }
  const script = new URL("./langgraph_upstream_node.mjs", import.meta.url).pathname;
  const { stdout, stderr, success } = await new Deno.Command("node", { args: [script] }).output()
    .catch((error) => ({ stdout: new Uint8Array(), stderr: String(error), success: false }));
  const decoder = new TextDecoder();
  console.log(
    success
      ? decoder.decode(stdout).trimEnd()
      : `SqliteSaver (Node) failed: ${
        typeof stderr === "string" ? stderr : decoder.decode(stderr)
      }`,
  );
}

await upstream();
const chatBytes = await bytesPerStep(["messages", "counter"]);
const counterBytes = await bytesPerStep(["counter"]);
console.log(
  `SessionCheckpointSaver bytes on disk per step: ${chatBytes} (20 messages rewritten), ` +
    `${counterBytes} (only a counter changes)`,
);

const store = new SessionStore({ root: join(dir, "throughput") });
const memory = new Steps(new MemorySaver(), "t");
const ours = new Steps(new SessionCheckpointSaver(store, { botId: "bench" }), "t");
const oursCounter = new Steps(new SessionCheckpointSaver(store, { botId: "bench" }), "c");
const group = "put + getTuple, 20 messages";
const runs = { n: 3000, warmup: 500 };

Deno.bench({ name: "MemorySaver", group, baseline: true, ...runs }, async () => {
  await memory.put(["messages", "counter"]);
  await memory.saver.getTuple(memory.latest);
});

Deno.bench({ name: "SessionCheckpointSaver", group, ...runs }, async () => {
  await ours.put(["messages", "counter"]);
  await ours.saver.getTuple(ours.latest);
});

Deno.bench({ name: "SessionCheckpointSaver, only a counter changes", group, ...runs }, async () => {
  await oursCounter.put(["counter"]);
  await oursCounter.saver.getTuple(oursCounter.latest);
});
