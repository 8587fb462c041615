import { deepEqual, equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { SessionStore } from "../mod.ts";
import {
  type AgentHandlerOptions,
  type ChatMessage,
  createHandler,
  fakeReply,
  type LastTurn,
} from "../examples/agent_server.ts";
import { withTempDir } from "./_helpers.ts";

const script = new URL("../examples/agent_server.ts", import.meta.url).pathname;

interface Served {
  base: string;
  store: SessionStore;
  root: string;
  /** The temp directory holding `root`, to check nothing is written beside it. */
  parent: string;
}

/** Serves the agent on a free loopback port over a fresh root, then closes everything. */
async function withServer(
  fn: (served: Served) => Promise<void>,
  options: AgentHandlerOptions = {},
): Promise<void> {
  await withTempDir(async (parent) => {
    const root = join(parent, "root");
    const store = new SessionStore({ root });
    const shutdown = new AbortController();
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, signal: shutdown.signal, onListen: () => {} },
      createHandler(store, options),
    );
    try {
      await fn({ base: `http://127.0.0.1:${server.addr.port}`, store, root, parent });
    } finally {
      shutdown.abort();
      await store.close(); // Ends event streams still open, so the server can finish.
      await server.finished;
    }
  });
}

function path(bot: string, session: string, resource = "messages"): string {
  return `/bots/${encodeURIComponent(bot)}/sessions/${encodeURIComponent(session)}/${resource}`;
}

async function post(base: string, url: string, body: unknown): Promise<Response> {
  return await fetch(base + url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

interface TurnResponse {
  turn: number;
  message: ChatMessage;
  reply: ChatMessage;
}

/** Reads Server-Sent Events from a response body, one `{ id, event, data }` at a time. */
function sseEvents(response: Response) {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    async next(): Promise<{ id?: string; event?: string; data?: string }> {
      while (true) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const fields: Record<string, string> = {};
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            fields[line.slice(0, colon)] = line.slice(colon + 1).trimStart();
          }
          if (fields.data === undefined) continue; // retry: or a comment
          return fields;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error("The event stream ended");
        buffer += value;
      }
    },
    async done(): Promise<boolean> {
      while (true) {
        const { done } = await reader.read();
        if (done) return true;
      }
    },
    cancel: () => reader.cancel(),
  };
}

async function sessionIds(store: SessionStore): Promise<string[]> {
  const ids: string[] = [];
  for await (const s of store.sessions()) ids.push(`${s.botId} ${s.sessionId}`);
  return ids.sort();
}

Deno.test("agent server: concurrent POSTs to many sessions each get a turn, and GET returns every history in order", async () => {
  await withServer(async ({ base, store }) => {
    const bots = ["support-bot", "sales-bot", "travel-bot"];
    const sessions = ["user-1", "user-2", "user-3", "user-4"];
    const texts = ["Where is order 12?", "hello", "What did I ask first?"];
    // Every message of every session at once: turns of one session queue on its lease.
    const posted = await Promise.all(
      bots.flatMap((bot) =>
        sessions.flatMap((session) =>
          texts.map(async (text) => {
            const response = await post(base, path(bot, session), { text });
            equal(response.status, 201);
            const body = await response.json() as TurnResponse;
            equal(body.message.text, text);
            return { bot, session, body };
          })
        )
      ),
    );
    for (const bot of bots) {
      for (const session of sessions) {
        const mine = posted.filter((p) => p.bot === bot && p.session === session);
        deepEqual(mine.map((p) => p.body.turn).sort(), [1, 2, 3]);

        const response = await fetch(base + path(bot, session));
        equal(response.status, 200);
        const { botId, sessionId, messages } = await response.json() as {
          botId: string;
          sessionId: string;
          messages: ChatMessage[];
        };
        deepEqual([botId, sessionId], [bot, session]);
        equal(messages.length, 6);
        deepEqual(messages.map((m) => m.role), [
          "user",
          "assistant",
          "user",
          "assistant",
          "user",
          "assistant",
        ]);
        deepEqual(messages.map((m) => m.turn), [1, 1, 2, 2, 3, 3]);
        deepEqual(
          messages.filter((m) => m.role === "user").map((m) => m.text).sort(),
          [
            ...texts,
          ].sort(),
        );
        // Each reply is the model's answer given the history before its turn.
        for (let i = 1; i < messages.length; i += 2) {
          equal(messages[i]!.text, fakeReply(bot, messages.slice(0, i - 1), messages[i - 1]!.text));
          const returned = mine.find((p) => p.body.turn === messages[i]!.turn)!;
          deepEqual(returned.body.reply, messages[i]);
        }
      }
    }
    equal((await sessionIds(store)).length, bots.length * sessions.length);
  });
});

Deno.test("agent server: GET /events streams the latest turn, then every new turn, until the client leaves", async () => {
  await withServer(async ({ base, store }) => {
    const response = await fetch(base + path("support-bot", "user-7", "events"));
    equal(response.status, 200);
    equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
    const events = sseEvents(response);

    const first = await events.next();
    equal(first.event, "turn");
    deepEqual(JSON.parse(first.data!), { turn: 0 } satisfies LastTurn);

    for (const [turn, text] of ["Where is order 42?", "What did I ask first?"].entries()) {
      const posted = await post(base, path("support-bot", "user-7"), { text });
      const body = await posted.json() as TurnResponse;
      const event = await events.next();
      const data = JSON.parse(event.data!) as LastTurn;
      equal(data.turn, turn + 1);
      deepEqual(data.message, body.message);
      deepEqual(data.reply, body.reply);
      ok(/^[0-9a-f]{20}$/.test(event.id!), event.id);
    }
    // While a client watches, its session is in use: cleanup keeps it.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const kept = await store.cleanup({ olderThanMs: 0, dryRun: true });
    deepEqual([kept.deleted, kept.skippedInUse], [0, 1]);
    await events.cancel();
    // The server noticed the client leaving and let go of the session.
    let deleted = 0;
    for (let i = 0; i < 200 && deleted === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      deleted = (await store.cleanup({ olderThanMs: 0, dryRun: true })).deleted;
    }
    equal(deleted, 1);
  });
});

Deno.test("agent server: closing the store ends open event streams", async () => {
  await withServer(async ({ base, store }) => {
    const response = await fetch(base + path("bot", "s", "events"));
    const events = sseEvents(response);
    await events.next();
    await store.close();
    equal(await events.done(), true);
  });
});

Deno.test("agent server: bad routes, methods and bodies get 404, 405, 400 and 413 and create nothing", async () => {
  await withServer(async ({ base, store }) => {
    const expect = async (
      status: number,
      url: string,
      init: RequestInit = {},
    ): Promise<Response> => {
      const response = await fetch(base + url, init);
      equal(response.status, status, `${init.method ?? "GET"} ${url}`);
      const body = await response.json() as { error: string };
      equal(typeof body.error, "string");
      return response;
    };
    await expect(404, "/");
    await expect(404, "/bots/a/sessions/b");
    await expect(404, "/bots/a/sessions/b/messages/extra");
    await expect(404, "/bots//sessions/b/messages");
    await expect(404, "/bots/a/chats/b/messages");
    // A bare ".." segment is resolved by URL parsing before the server sees it.
    await expect(404, "/bots/../sessions/b/messages");
    await expect(404, "/bots/%2e%2e/sessions/b/messages");

    const put = await expect(405, "/bots/a/sessions/b/messages", { method: "PUT", body: "{}" });
    equal(put.headers.get("allow"), "GET, POST");
    const postEvents = await expect(405, "/bots/a/sessions/b/events", { method: "POST" });
    equal(postEvents.headers.get("allow"), "GET");

    const url = "/bots/a/sessions/b/messages";
    for (
      const body of ["not json", "null", "[]", "{}", '{"text":""}', '{"text":"  "}', '{"text":5}']
    ) {
      await expect(400, url, { method: "POST", body });
    }
    await expect(400, url, { method: "POST", body: JSON.stringify({ text: "x".repeat(4001) }) });
    await expect(413, url, { method: "POST", body: JSON.stringify({ text: "x".repeat(20_000) }) });
    await expect(400, "/bots/%E0%A4%A/sessions/b/messages");
    await expect(400, `/bots/a/sessions/${"x".repeat(256)}/messages`);
    await expect(400, `/bots/${"%C3%A9".repeat(128)}/sessions/b/messages`, {
      method: "POST",
      body: '{"text":"hi"}',
    });

    deepEqual(await sessionIds(store), []);
  });
});

Deno.test("agent server: ids with '/' and '..' encoded in the URL stay inside the root", async () => {
  await withServer(async ({ base, store, root, parent }) => {
    const bot = "../../etc";
    const session = "a/b/../../..";
    equal(path(bot, session), "/bots/..%2F..%2Fetc/sessions/a%2Fb%2F..%2F..%2F../messages");
    const response = await post(base, path(bot, session), { text: "hi" });
    equal(response.status, 201);
    equal((await response.json() as TurnResponse).reply.text, `${bot} heard "hi" (turn 1).`);

    const history = await fetch(base + path(bot, session));
    const { botId, sessionId, messages } = await history.json() as {
      botId: string;
      sessionId: string;
      messages: ChatMessage[];
    };
    deepEqual([botId, sessionId, messages.length], [bot, session, 2]);
    deepEqual(await sessionIds(store), [`${bot} ${session}`]);

    // Every file the server wrote is under the root, and nothing beside it.
    deepEqual((await Array.fromAsync(Deno.readDir(parent))).map((e) => e.name), ["root"]);
    const realRoot = await Deno.realPath(root);
    const walk = async (dir: string): Promise<number> => {
      let files = 0;
      for await (const entry of Deno.readDir(dir)) {
        const full = join(dir, entry.name);
        ok((await Deno.realPath(full)).startsWith(realRoot + "/"), full);
        ok(!entry.isSymlink, full);
        files += entry.isDirectory ? await walk(full) : 1;
      }
      return files;
    };
    ok(await walk(root) > 0);
  });
});

Deno.test("agent server: a turn that does not come within turnTimeoutMs answers 503", async () => {
  await withServer(async ({ base, store }) => {
    await using _held = await store.acquire("bot", "busy");
    const response = await post(base, path("bot", "busy"), { text: "hello?" });
    equal(response.status, 503);
    equal(response.headers.get("retry-after"), "1");
    ok((await response.json() as { error: string }).error.includes("Timed out"));
  }, { turnTimeoutMs: 100 });
});

Deno.test("examples/agent_server.ts serves on port 0 with narrow permissions, schedules cleanup and stops on SIGINT", async () => {
  await withTempDir(async (root) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--allow-net=127.0.0.1",
        `--allow-read=${root}`,
        `--allow-write=${root}`,
        "--allow-env=SESSIONKV_ROOT,SESSIONKV_CLEANUP_ENABLED,SESSIONKV_CLEANUP_INTERVAL_HOURS,SESSIONKV_CLEANUP_OLDER_THAN_DAYS",
        script,
        "--root",
        root,
        "--port",
        "0",
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let output = "";
    try {
      while (!/agent listening on (http:\S+)/.test(output) || !output.includes("cleanup: ")) {
        const { value, done } = await lines.read();
        if (done) break;
        output += value;
      }
      const base = /agent listening on (http:\/\/127\.0\.0\.1:\d+)\//.exec(output)?.[1];
      ok(base, output);
      ok(/cleanup: timer, "0 \* \* \* \*", after 7 d/.test(output), output);

      const response = await post(base, path("support-bot", "user-42"), {
        text: "Where is order 7?",
      });
      equal(response.status, 201);
      equal((await response.json() as TurnResponse).reply.text, "Order 7 is held at customs.");
    } finally {
      child.kill("SIGINT");
      for (;;) {
        const { value, done } = await lines.read();
        if (done) break;
        output += value;
      }
      const status = await child.status;
      const stderr = await new Response(child.stderr).text();
      equal(status.code, 0, stderr);
      ok(output.includes("agent stopped"), output);
    }
    await using store = new SessionStore({ root });
    deepEqual(await sessionIds(store), ["support-bot user-42"]);
  });
});
