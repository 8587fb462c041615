// The upstream SqliteSaver (@langchain/langgraph-checkpoint-sqlite on
// better-sqlite3) measured on Node exactly as bench/langgraph_bench.ts
// measures SessionCheckpointSaver: put + getTuple pairs per second for a
// checkpoint of 20 chat messages, and bytes on disk per step.
//
// Run: deno task bench:upstream (installs bench/upstream/ with npm, then
// runs this file with node).
import { createRequire } from "node:module";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(new URL("./upstream/package.json", import.meta.url));
const load = (name) => import(require.resolve(name));
const { AIMessage, HumanMessage } = await load("@langchain/core/messages");
const { uuid6 } = await load("@langchain/langgraph-checkpoint");
const { SqliteSaver } = await load("@langchain/langgraph-checkpoint-sqlite");

const dir = mkdtempSync(join(tmpdir(), "sessionkv-upstream-bench-"));
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

const MESSAGES = Array.from(
  { length: 20 },
  (_, i) =>
    i % 2 === 0
      ? new HumanMessage({
        content: `Question ${i}: how do I keep state per conversation?`,
        id: `m${i}`,
      })
      : new AIMessage({
        content: `Answer ${i}: `.padEnd(300, "give each thread its own file. "),
        id: `m${i}`,
      }),
);

// A step loop: each step changes `changed` (the first step of a thread every
// channel); a new thread starts every `threadSteps` steps.
class Steps {
  #versions = {};
  #config = {};
  #n = 0;
  constructor(saver, prefix, threadSteps = 100) {
    this.saver = saver;
    this.prefix = prefix;
    this.threadSteps = threadSteps;
  }
  get latest() {
    return { configurable: { ...this.#config.configurable, checkpoint_id: undefined } };
  }
  async put(changed) {
    if (this.#n % this.threadSteps === 0) {
      const thread_id = `${this.prefix}${Math.floor(this.#n / this.threadSteps)}`;
      this.#config = { configurable: { thread_id, checkpoint_ns: "" } };
      this.#versions = { messages: 0, counter: 0 };
      changed = ["messages", "counter"];
    }
    const newVersions = {};
    for (const c of changed) newVersions[c] = ++this.#versions[c];
    const checkpoint = {
      v: 4,
      id: uuid6(0),
      ts: new Date().toISOString(),
      channel_values: { messages: MESSAGES, counter: this.#n },
      channel_versions: { ...this.#versions },
      versions_seen: { agent: { messages: this.#versions.messages } },
    };
    this.#config = await this.saver.put(
      this.#config,
      checkpoint,
      { source: "loop", step: this.#n++, parents: {} },
      newVersions,
    );
    return this.#config;
  }
}

const dirBytes = (path) =>
  readdirSync(path).reduce((sum, name) => sum + statSync(join(path, name)).size, 0);

async function bytesPerStep(changed, steps = 500, warm = 50) {
  const root = mkdtempSync(join(dir, "bytes-"));
  const file = join(root, "checkpoints.sqlite");
  let s;
  const run = async (count) => {
    const saver = SqliteSaver.fromConnString(file);
    s ??= new Steps(saver, "bytes", Infinity);
    s.saver = saver;
    for (let i = 0; i < count; i++) await s.put(changed);
    saver.db.close(); // checkpoints the WAL into the database file
    return dirBytes(root);
  };
  const before = await run(warm);
  const after = await run(steps);
  return Math.round((after - before) / steps);
}

async function pairsPerSecond(steps, changed, seconds = 3) {
  for (let i = 0; i < 200; i++) {
    await steps.put(changed);
    await steps.saver.getTuple(steps.latest);
  }
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    await steps.put(changed);
    await steps.saver.getTuple(steps.latest);
    n++;
  }
  const elapsed = performance.now() - start;
  return { pairs: Math.round(n / (elapsed / 1000)), usPerPair: (elapsed * 1000 / n).toFixed(1) };
}

const chat = await bytesPerStep(["messages", "counter"]);
const counter = await bytesPerStep(["counter"]);
console.log(
  `SqliteSaver bytes on disk per step: ${chat} (20 messages rewritten), ${counter} (only a counter changes)`,
);
const saver = SqliteSaver.fromConnString(join(dir, "throughput.sqlite"));
const all = await pairsPerSecond(new Steps(saver, "t"), ["messages", "counter"]);
console.log(
  `SqliteSaver put + getTuple, 20 messages: ${all.pairs} pairs/s (${all.usPerPair} µs/pair)`,
);
const one = await pairsPerSecond(new Steps(saver, "c"), ["counter"]);
console.log(
  `SqliteSaver put + getTuple, 20 messages, only a counter changes: ${one.pairs} pairs/s (${one.usPerPair} µs/pair)`,
);
saver.db.close();
