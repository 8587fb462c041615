/**
 * `deno task demo`: several bots hold conversations concurrently, each in its
 * own SQLite file, then the demo prints what every session stored.
 *
 * Usage: deno task demo [--root DIR]   (default: a fresh temp directory)
 */
import { parseArgs } from "node:util";
import { SessionStore } from "../mod.ts";

const { values } = parseArgs({ options: { root: { type: "string" } } });
const root = values.root ?? await Deno.makeTempDir({ prefix: "sessionkv-demo-" });

interface Message {
  role: "user" | "assistant";
  text: string;
}

const bots = ["support-bot", "sales-bot", "travel-bot"];
const users = ["ana", "bo", "chen", "dara", "eli"];
const questions = ["hello", "where is my order?", "thanks!"];

await using store = new SessionStore({ root });
const started = performance.now();

// Every (bot, user) conversation runs at the same time; each turn is an
// exclusive lease on that conversation's own file.
await Promise.all(bots.flatMap((bot) =>
  users.map(async (user) => {
    for (const [turn, question] of questions.entries()) {
      await store.withSession(bot, user, async (kv) => {
        const reply = `${bot} answers "${question}" for ${user}`;
        await kv.atomic()
          .set(["messages", turn * 2], { role: "user", text: question } satisfies Message)
          .set(["messages", turn * 2 + 1], { role: "assistant", text: reply } satisfies Message)
          .sum(["turns"], 1n)
          .commit();
      });
    }
  })
));
const elapsed = performance.now() - started;

console.log(`sessionkv demo: ${bots.length * users.length} sessions under ${root}\n`);
console.log("bot          session  turns  messages  last reply");
for (const bot of bots) {
  for (const user of users) {
    using kv = await store.openKv(bot, user);
    const turns = (await kv.get<{ value: bigint }>(["turns"])).value?.value ?? 0n;
    const messages: Message[] = [];
    for await (const e of kv.list<Message>({ prefix: ["messages"] })) messages.push(e.value);
    const last = messages.at(-1)?.text ?? "";
    console.log(
      `${bot.padEnd(12)} ${user.padEnd(8)} ${String(turns).padStart(5)}  ${
        String(messages.length).padStart(8)
      }  ${last.slice(0, 40)}`,
    );
  }
}
const stats = store.stats();
console.log(
  `\n${bots.length * users.length * questions.length} turns in ${elapsed.toFixed(0)} ms; ` +
    `${stats.opens} files opened, ${stats.evictions} evicted`,
);
