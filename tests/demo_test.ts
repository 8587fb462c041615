import { deepEqual, equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { SessionStore } from "../mod.ts";
import { SessionCheckpointSaver } from "../langgraph.ts";
import { withTempDir } from "./_helpers.ts";

const repo = new URL("..", import.meta.url).pathname;

/** The `demo` task's command line from deno.json, so the test runs its exact permissions. */
async function demoTask(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(join(repo, "deno.json")));
  const words = (config.tasks.demo as string).split(/\s+/);
  equal(words[0], "deno");
  equal(words[1], "run");
  return words.slice(1);
}

async function runDemo(args: string[]): Promise<{ out: string; ms: number }> {
  const started = performance.now();
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [...await demoTask(), ...args],
    cwd: repo,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  const err = new TextDecoder().decode(stderr);
  equal(code, 0, `exit code ${code}\n${out}\n${err}`);
  equal(err, "", err);
  return { out, ms: performance.now() - started };
}

function number(out: string, pattern: RegExp): number {
  const match = pattern.exec(out);
  ok(match, `${pattern} not found in:\n${out}`);
  return Number(match[1]!.replaceAll(",", ""));
}

Deno.test("deno task demo serves 300 conversations, cleans up the abandoned ones, and reports what is on disk", async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, "demo");
    const { out, ms } = await runDemo(["--root", root]);
    ok(ms < 60_000, `the demo took ${ms} ms`);

    for (const line of out.split("\n")) {
      ok([...line].length <= 80, `longer than 80 columns: "${line}"`);
      ok(!line.includes("\r"), "a progress line on a pipe");
    }
    ok(out.includes(`data: ${root}\n`), out);

    const turns = number(out, /(\d[\d,]*) user messages/);
    equal(number(out, /Served (\d[\d,]*) turns/), turns);
    equal(number(out, /store\.sessions\(\): (\d[\d,]*) sessions/), 300);
    const aged = number(out, /, (\d+) sessions \(chosen by the seed\)/);
    const wouldDelete = number(out, /would delete (\d+) of 300 sessions/);
    const deleted = number(out, /deleted (\d+) of 300 sessions/);
    const left = number(out, /store\.sessions\(\) now finds (\d[\d,]*) sessions/);
    ok(aged > 0, out);
    equal(wouldDelete, aged);
    equal(deleted, aged);
    equal(left, 300 - deleted);
    ok(out.includes("0 skipped in use, 0 errors"), out);

    // What the output says is what is on disk.
    await using store = new SessionStore({ root });
    const sessions = await Array.fromAsync(store.sessions());
    equal(sessions.length, left);
    const cutoff = Date.now() - 86_400_000;
    ok(sessions.every((s) => s.lastActivity.getTime() > cutoff), "an abandoned session is left");
    deepEqual(
      [...new Set(sessions.map((s) => s.botId))].sort(),
      ["billing-bot", "sales-bot", "support-bot", "travel-bot"],
    );

    // Each remaining conversation has its chat in SessionKv and its LangGraph
    // checkpoint in the same file, and they agree.
    let storedTurns = 0;
    for (const s of sessions) {
      using kv = await store.openKv(s.botId, s.sessionId);
      const n = (await kv.get<number>(["turns"])).value ?? 0;
      ok(n >= 2 && n <= 4, `${s.botId}/${s.sessionId}: ${n} turns`);
      const chat = await Array.fromAsync(kv.list<{ role: string; text: string }>({
        prefix: ["messages"],
      }));
      equal(chat.length, 2 * n);
      storedTurns += n;
      if (s.sessionId.endsWith("0")) {
        const saver = new SessionCheckpointSaver(store, { botId: s.botId });
        const tuple = await saver.getTuple({ configurable: { thread_id: s.sessionId } });
        const messages = tuple?.checkpoint.channel_values.messages as
          | { content: unknown }[]
          | undefined;
        ok(messages, `${s.botId}/${s.sessionId} has no checkpoint`);
        deepEqual(messages.at(-1)?.content, chat.at(-1)?.value.text);
        equal(messages.filter((m) => m.constructor.name === "HumanMessage").length, n);
      }
    }
    ok(storedTurns < turns, "the deleted sessions' turns are gone");
  });
});

Deno.test("deno task demo is deterministic: the same seed gives the same conversations and cleanup", async () => {
  await withTempDir(async (dir) => {
    const stable = (out: string) =>
      out.split("\n")
        .filter((line) => !/ms|turns\/s|\/s\)|data:|--root| s\b|opens/.test(line))
        .join("\n");
    const first = await runDemo(["--root", join(dir, "a"), "--sessions", "24", "--seed", "7"]);
    const second = await runDemo(["--root", join(dir, "b"), "--sessions", "24", "--seed", "7"]);
    equal(stable(second.out), stable(first.out));
    ok(first.out.includes("store.sessions(): 24 sessions"), first.out);
    const other = await runDemo(["--root", join(dir, "c"), "--sessions", "24", "--seed", "8"]);
    ok(stable(other.out) !== stable(first.out), "another seed, another run");
  });
});

Deno.test("examples/lock_contention.ts: writers with a file per conversation never fail on a lock", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      join(repo, "examples/lock_contention.ts"),
      "--workers",
      "3",
      "--commits",
      "300",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  equal(code, 0, new TextDecoder().decode(stderr));
  ok(/^shared +\d+ .* of 900 \(\d+ %\)$/m.test(out), out);
  ok(/^per-session +\d+ .* 0 of 900 \(0 %\)$/m.test(out), out);
});
