/**
 * `deno task demo`: sessionkv doing its main job, with no network.
 *
 * Four bots hold 300 conversations at once. A pool of agent loops takes user
 * messages as they arrive (in a seeded, shuffled order); every turn holds an
 * exclusive lease on its conversation (`store.acquire()`), keeps the chat in
 * the session's `SessionKv` and runs a small LangGraph `StateGraph` whose
 * checkpoints `SessionCheckpointSaver` writes to the same session's SQLite
 * file. The chat model is a deterministic fake, so every run says the same
 * (timings aside). Then the demo lists sessions with `store.sessions()`,
 * makes a quarter of them look abandoned, and runs a dry-run and a real
 * `cleanup()`.
 *
 * ```sh
 * deno task demo [--root DIR] [--sessions 300] [--seed 42]
 * ```
 *
 * Without `--root` the data goes to a new temp directory, which is printed
 * and left in place for `deno task sessions --root DIR` to inspect.
 *
 * Permissions: `--allow-read`, `--allow-write` (the root), `--allow-env` and
 * `--allow-sys=homedir` (LangChain reads its configuration from both).
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BaseChatModel } from "@langchain/core/language_models/chat_models";
import {
  AIMessage,
  type BaseMessage,
  HumanMessage,
  isAIMessage,
  ToolMessage,
} from "@langchain/core/messages";
import type { ChatResult } from "@langchain/core/outputs";
import type { RunnableConfig } from "@langchain/core/runnables";
import { tool } from "@langchain/core/tools";
import type {
  ChannelVersions,
  Checkpoint,
  CheckpointMetadata,
} from "@langchain/langgraph-checkpoint";
import { END, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import { ToolNode } from "@langchain/langgraph/prebuilt";
import { type SessionInfo, SessionStore } from "../mod.ts";
import { SessionCheckpointSaver } from "../langgraph.ts";

// ---------------------------------------------------------------------------
// Settings

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    root: { type: "string" },
    sessions: { type: "string", default: "300" },
    seed: { type: "string", default: "42" },
  },
});
const SESSIONS = Number(args.sessions);
const SEED = Number(args.seed);
if (!Number.isInteger(SESSIONS) || SESSIONS < 4 || !Number.isInteger(SEED)) {
  console.error("Usage: deno task demo [--root DIR] [--sessions N >= 4] [--seed N]");
  Deno.exit(2);
}
const BOTS = ["support-bot", "travel-bot", "sales-bot", "billing-bot"] as const;
type Bot = typeof BOTS[number];
/** Agent loops serving at once. */
const LOOPS = 8;
/** Open session files kept at once: fewer than the sessions, so files are evicted and reopened. */
const MAX_OPEN = 256;
/** Idle days given to the "abandoned" sessions, and the cleanup's cutoff. */
const AGE_DAYS = 10;
const CUTOFF_DAYS = 7;

const root = args.root ?? await Deno.makeTempDir({ prefix: "sessionkv-demo-" });
await Deno.mkdir(root, { recursive: true });

// ---------------------------------------------------------------------------
// Determinism: a seeded PRNG per (bot, session, turn)

/** mulberry32: a small seeded PRNG returning numbers in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a of a string, mixed with the seed. */
function hash(text: string): number {
  let h = 0x811c9dc5 ^ SEED;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function rngFor(...parts: (string | number)[]): () => number {
  return mulberry32(hash(parts.join("/")));
}

function pick<T>(rng: () => number, items: readonly T[]): T {
  return items[Math.floor(rng() * items.length)]!;
}

// ---------------------------------------------------------------------------
// The agent: two tools, a scripted chat model, a StateGraph per bot

const CITIES = ["Lisbon", "Oslo", "Kyoto", "Lima", "Cairo", "Denver"];
const PLANS: Record<string, string> = { starter: "$9", team: "$29", business: "$99" };

const orderStatus = tool(
  ({ orderId }: { orderId: string }) =>
    pick(rngFor("order", orderId), [
      "shipped on Monday",
      "being packed",
      "delivered yesterday",
      "held at customs",
    ]),
  {
    name: "order_status",
    description: "Looks up the shipping status of an order",
    schema: { type: "object", properties: { orderId: { type: "string" } }, required: ["orderId"] },
  },
);

const weather = tool(
  ({ city }: { city: string }) => {
    const rng = rngFor("weather", city);
    return `${10 + Math.floor(rng() * 20)} C, ${pick(rng, ["sunny", "cloudy", "rain"])}`;
  },
  {
    name: "weather",
    description: "Today's weather in a city",
    schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
);

/** What users say: a few templates per bot, filled from the PRNG. */
function userMessage(bot: Bot, sessionId: string, turn: number): string {
  const rng = rngFor(bot, sessionId, turn);
  const order = 1000 + Math.floor(rng() * 9000);
  const city = pick(rng, CITIES);
  const plan = pick(rng, Object.keys(PLANS));
  const templates: Record<Bot, string[]> = {
    "support-bot": [
      `Where is order ${order}?`,
      "Can I change my address?",
      "What did I ask first?",
    ],
    "travel-bot": [`What's the weather in ${city}?`, `Find a hotel in ${city}`, "Thanks!"],
    "sales-bot": [`How much is the ${plan} plan?`, "Any discounts?", "What did I ask first?"],
    "billing-bot": [`Why was order ${order} charged twice?`, "Send my invoice", "Thanks!"],
  };
  return pick(rng, templates[bot]);
}

/** A chat model that answers by rules, so runs are reproducible and offline. */
class ScriptedChatModel extends BaseChatModel {
  _llmType(): string {
    return "scripted";
  }

  _generate(messages: BaseMessage[]): Promise<ChatResult> {
    const message = this.#reply(messages);
    return Promise.resolve({ generations: [{ message, text: String(message.content) }] });
  }

  #reply(messages: BaseMessage[]): AIMessage {
    const last = messages.at(-1);
    if (last instanceof ToolMessage) {
      return new AIMessage(
        last.name === "weather" ? `It's ${last.content} there.` : `That order is ${last.content}.`,
      );
    }
    const text = String(last?.content ?? "");
    const humans = messages.filter((m) => m instanceof HumanMessage);
    const call = (name: string, args: Record<string, string>) =>
      new AIMessage({ content: "", tool_calls: [{ name, args, id: `call_${messages.length}` }] });
    let match;
    if ((match = /order (\d+)/.exec(text))) return call("order_status", { orderId: match[1]! });
    if ((match = /weather in (\w+)/.exec(text))) return call("weather", { city: match[1]! });
    if ((match = /the (\w+) plan/.exec(text))) {
      return new AIMessage(`The ${match[1]} plan is ${PLANS[match[1]!]} a month.`);
    }
    if (text.startsWith("What did I ask first")) {
      return new AIMessage(`You first asked: "${humans[0]?.content}"`);
    }
    if (text.startsWith("Thanks")) return new AIMessage(`You're welcome! (${humans.length} asks)`);
    return new AIMessage(`Done: "${text}" handled, message ${humans.length} of this chat.`);
  }
}

/** A saver that counts the checkpoints it writes, for the summary. */
class CountingSaver extends SessionCheckpointSaver {
  static puts = 0;
  override put(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    newVersions: ChannelVersions,
  ): Promise<RunnableConfig> {
    CountingSaver.puts++;
    return super.put(config, checkpoint, metadata, newVersions);
  }
}

const model = new ScriptedChatModel({});

/** `agent` → (`tools` → `agent`)* → end, checkpointed in the bot's sessions. */
function buildAgent(store: SessionStore, botId: Bot) {
  return new StateGraph(MessagesAnnotation)
    .addNode("agent", async (state) => ({ messages: [await model.invoke(state.messages)] }))
    .addNode("tools", new ToolNode([orderStatus, weather]))
    .addEdge(START, "agent")
    .addConditionalEdges("agent", (state) => {
      const last = state.messages.at(-1);
      return last && isAIMessage(last) && (last.tool_calls?.length ?? 0) > 0 ? "tools" : END;
    })
    .addEdge("tools", "agent")
    .compile({ checkpointer: new CountingSaver(store, { botId }) });
}

// ---------------------------------------------------------------------------
// Output helpers (80 columns)

const encoder = new TextEncoder();
const tty = Deno.stdout.isTerminal();
const fmt = (n: number) => n.toLocaleString("en-US");
const kib = (bytes: number) =>
  bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${Math.round(bytes / 1024)} KiB`;
const cut = (text: string, width: number) =>
  text.length <= width ? text : `${text.slice(0, width - 1)}…`;
function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

// ---------------------------------------------------------------------------
// 1. Serve the conversations

/** Every session gets 2 to 4 user messages; they arrive shuffled across sessions. */
const sessionsOf = (bot: Bot) => {
  const ids: string[] = [];
  const perBot = Math.ceil(SESSIONS / BOTS.length);
  const first = BOTS.indexOf(bot) * perBot;
  for (let i = first; i < Math.min(first + perBot, SESSIONS); i++) {
    ids.push(`user-${String(i + 1).padStart(3, "0")}`);
  }
  return ids;
};
const inbox: [Bot, string][] = [];
for (const bot of BOTS) {
  for (const sessionId of sessionsOf(bot)) {
    const turns = 2 + Math.floor(rngFor(bot, sessionId, "turns")() * 3);
    for (let t = 0; t < turns; t++) inbox.push([bot, sessionId]);
  }
}
const shuffle = mulberry32(SEED);
for (let i = inbox.length - 1; i > 0; i--) {
  const j = Math.floor(shuffle() * (i + 1));
  [inbox[i], inbox[j]] = [inbox[j]!, inbox[i]!];
}

console.log(
  `sessionkv demo: ${BOTS.length} bots, ${fmt(SESSIONS)} conversations, ` +
    `${fmt(inbox.length)} user messages (seed ${SEED})`,
);
console.log(`data: ${root}`);
console.log(`
${LOOPS} agent loops serve the messages as they arrive. Each turn holds
store.acquire(bot, session), runs a LangGraph StateGraph checkpointed by
SessionCheckpointSaver, and commits the chat to the session's SessionKv: one
SQLite file per conversation, at most ${MAX_OPEN} of them open at once.
`);

const store = new SessionStore({ root, maxOpenSessions: MAX_OPEN });
const agents = new Map(BOTS.map((bot) => [bot, buildAgent(store, bot)]));
const turnMs: number[] = [];
const waitMs: number[] = [];
let toolCalls = 0;

/** One turn: the lease, the graph, the chat commit. */
async function takeTurn(bot: Bot, sessionId: string): Promise<void> {
  const asked = performance.now();
  await using lease = await store.acquire(bot, sessionId, { timeoutMs: 30_000 });
  const granted = performance.now();
  const kv = lease.kv;
  const turns = await kv.get<number>(["turns"]);
  const turn = (turns.value ?? 0) + 1;
  const text = userMessage(bot, sessionId, turn);
  const result = await agents.get(bot)!.invoke(
    { messages: [new HumanMessage(text)] },
    { configurable: { thread_id: sessionId } },
  );
  const fresh = result.messages.slice(-3);
  const calls = fresh.filter((m) => m instanceof ToolMessage).length;
  const reply = String(result.messages.at(-1)?.content ?? "");
  const at = Date.now();
  // Under the lease nobody else can write the turn counter; the check makes
  // that visible (and would catch a bug).
  const commit = await kv.atomic()
    .check(turns)
    .set(["messages", 2 * turn - 1], { role: "user", text, at })
    .set(["messages", 2 * turn], { role: "assistant", text: reply, at })
    .set(["turns"], turn)
    .sum(["toolCalls"], BigInt(calls))
    .commit();
  if (!commit.ok) throw new Error(`Turn ${turn} of ${bot}/${sessionId} lost its check`);
  toolCalls += calls;
  waitMs.push(granted - asked);
  turnMs.push(performance.now() - asked);
}

const started = performance.now();
let done = 0;
let lastDraw = 0;
function drawProgress(final = false): void {
  if (!tty) return;
  const now = performance.now();
  if (!final && now - lastDraw < 100) return;
  lastDraw = now;
  const secs = (now - started) / 1000;
  const line = `  ${fmt(done)}/${fmt(inbox.length)} turns  ${secs.toFixed(1)} s  ` +
    `${fmt(Math.round(done / Math.max(secs, 0.001)))} turns/s  ` +
    `${store.stats().openSessions} files open`;
  Deno.stdout.writeSync(encoder.encode(`\r${line.padEnd(79)}${final ? "\r" : ""}`));
  if (final) Deno.stdout.writeSync(encoder.encode(`${" ".repeat(79)}\r`));
}

let next = 0;
async function agentLoop(): Promise<void> {
  while (next < inbox.length) {
    const [bot, sessionId] = inbox[next++]!;
    await takeTurn(bot, sessionId);
    done++;
    drawProgress();
  }
}
await Promise.all(Array.from({ length: LOOPS }, agentLoop));
drawProgress(true);
const elapsedMs = performance.now() - started;
const stats = store.stats();

// Read a few conversations back (two per bot) for the table below.
const aged = (bot: Bot, sessionId: string) => rngFor(bot, sessionId, "aged")() < 0.25;
const shown = BOTS.flatMap((bot) => {
  const ids = sessionsOf(bot);
  return [ids.find((id) => !aged(bot, id)), ids.find((id) => aged(bot, id))]
    .filter((id) => id !== undefined).map((id) => [bot, id] as const);
});
const details = new Map<string, { turns: number; messages: number; last: string }>();
for (const [bot, sessionId] of shown) {
  using kv = await store.openKv(bot, sessionId);
  const messages = await Array.fromAsync(kv.list<{ text: string }>({ prefix: ["messages"] }));
  details.set(`${bot}/${sessionId}`, {
    turns: (await kv.get<number>(["turns"])).value ?? 0,
    messages: messages.length,
    last: messages.at(-1)?.value.text ?? "",
  });
}
await store.close();

console.log(
  `Served ${fmt(inbox.length)} turns in ${(elapsedMs / 1000).toFixed(1)} s ` +
    `(${fmt(Math.round(inbox.length / (elapsedMs / 1000)))} turns/s).\n`,
);

// ---------------------------------------------------------------------------
// 2. Age some sessions, list, clean up (a later process, as a cron job would be)

await using sweeper = new SessionStore({ root });
const past = new Date(Date.now() - AGE_DAYS * 86_400_000);
let agedCount = 0;
for await (const info of sweeper.sessions()) {
  if (!BOTS.includes(info.botId as Bot) || !aged(info.botId as Bot, info.sessionId)) continue;
  for await (const entry of Deno.readDir(info.path)) {
    if (entry.isFile) await Deno.utime(join(info.path, entry.name), past, past);
  }
  agedCount++;
}
console.log(
  `To give cleanup something to do, ${agedCount} sessions (chosen by the seed) now
look abandoned: every file in their directories got an mtime ${AGE_DAYS} days ago
(Deno.utime). cleanup() judges idleness by a session's newest file write.
`,
);

const listed: SessionInfo[] = await Array.fromAsync(sweeper.sessions());
listed.sort((a, b) =>
  a.botId === b.botId ? (a.sessionId < b.sessionId ? -1 : 1) : (a.botId < b.botId ? -1 : 1)
);
const totalBytes = listed.reduce((sum, s) => sum + s.sizeBytes, 0);
console.log(
  `store.sessions(): ${fmt(listed.length)} sessions, ${kib(totalBytes)} on disk; a few:\n`,
);
console.log("bot          session  turns msgs     size   idle  last reply");
const now = Date.now();
for (const [bot, sessionId] of shown) {
  const info = listed.find((s) => s.botId === bot && s.sessionId === sessionId);
  const d = details.get(`${bot}/${sessionId}`);
  if (info === undefined || d === undefined) continue;
  const idleMs = now - info.lastActivity.getTime();
  const idle = idleMs >= 86_400_000 ? `${Math.floor(idleMs / 86_400_000)} d` : "now";
  console.log(
    `${bot.padEnd(12)} ${sessionId.padEnd(8)} ${String(d.turns).padStart(5)} ` +
      `${String(d.messages).padStart(4)} ${kib(info.sizeBytes).padStart(8)} ` +
      `${idle.padStart(6)}  ${cut(d.last, 28)}`,
  );
}

const dry = await sweeper.cleanup({ olderThanDays: CUTOFF_DAYS, dryRun: true });
console.log(`
cleanup({ olderThanDays: ${CUTOFF_DAYS}, dryRun: true })
  would delete ${fmt(dry.deleted)} of ${fmt(dry.scanned)} sessions (${kib(dry.bytesFreed)})`);
const real = await sweeper.cleanup({ olderThanDays: CUTOFF_DAYS });
const left: SessionInfo[] = await Array.fromAsync(sweeper.sessions());
console.log(`cleanup({ olderThanDays: ${CUTOFF_DAYS} })
  deleted ${fmt(real.deleted)} of ${fmt(real.scanned)} sessions, freed ${
  kib(real.bytesFreed)
}, ${real.skippedInUse} skipped in use, ${real.errors.length} errors
store.sessions() now finds ${fmt(left.length)} sessions.`);
for (const e of real.errors) console.log(`  error: ${cut(`${e.path}: ${e.message}`, 70)}`);

// ---------------------------------------------------------------------------
// 3. Throughput

turnMs.sort((a, b) => a - b);
waitMs.sort((a, b) => a - b);
const secs = elapsedMs / 1000;
const ms = (n: number) => `${Math.round(n)} ms`;
const cores = navigator.hardwareConcurrency;
console.log(`
Throughput (${LOOPS} agent loops in one process, ${cores} CPU core${cores === 1 ? "" : "s"})
  turns             ${fmt(inbox.length)} in ${secs.toFixed(1)} s: ${
  fmt(Math.round(inbox.length / secs))
} turns/s
  turn time         p50 ${ms(quantile(turnMs, 0.5))}, p99 ${
  ms(quantile(turnMs, 0.99))
} (${LOOPS} in flight)
  of which acquire  p50 ${ms(quantile(waitMs, 0.5))}, p99 ${ms(quantile(waitMs, 0.99))}
  checkpoints       ${fmt(CountingSaver.puts)} written (${
  fmt(Math.round(CountingSaver.puts / secs))
}/s), ${fmt(toolCalls)} tool calls
  session files     ${fmt(stats.opens)} opens, ${
  fmt(stats.evictions)
} evictions (${MAX_OPEN} open at most)

Inspect the data (the demo leaves it in place):
  deno task sessions --root ${root}`);
