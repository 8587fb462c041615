/**
 * A Deno Deploy main module: a tiny chat agent whose conversations live in
 * Deno KV through `denoKvBackend`, one exclusive turn per request (a lease
 * that holds across every instance of the deployment), and the hourly
 * cleanup registered with `Deno.cron` at the top level of the module, as
 * Deploy requires (crons are discovered when the module is loaded).
 *
 * ```sh
 * # Locally: a Deno KV file stands in for Deploy's KV.
 * deno run --allow-net --allow-read --allow-write --allow-env --unstable-kv --unstable-cron \
 *   examples/deploy.ts
 * curl -X POST localhost:8000/bots/support-bot/sessions/user-42 -d 'Where is order 7?'
 * curl localhost:8000/bots/support-bot/sessions/user-42
 * curl localhost:8000/sessions
 * ```
 *
 * On Deploy, `Deno.openKv()` with no argument opens the deployment's KV;
 * locally it opens a file in Deno's cache (or `SESSIONKV_DENOKV_PATH`).
 *
 * @module
 */
import { scheduleCleanup, SessionStore } from "../mod.ts";
import { denoKvBackend } from "../denokv.ts";

const kv = await Deno.openKv(Deno.env.get("SESSIONKV_DENOKV_PATH"));
const store = new SessionStore({
  backend: denoKvBackend(kv, { prefix: ["agent-sessions"], leaseTtlMs: 15_000 }),
});

// Top level: Deploy registers `Deno.cron` jobs only while loading the module.
// Without `Deno.cron` (no --unstable-cron), a timer runs the same sweep.
scheduleCleanup(store, { schedule: "0 * * * *", olderThanDays: 7, name: "agent-cleanup" });

interface Message {
  role: "user" | "assistant";
  text: string;
  at: string;
}

/** A deterministic stand-in for a model call. */
function reply(history: Message[], text: string): string {
  const turns = history.filter((m) => m.role === "user").length + 1;
  return `(turn ${turns}) You said: ${text.slice(0, 200)}`;
}

const route = new URLPattern({ pathname: "/bots/:bot/sessions/:session" });

function json(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}

async function handle(request: Request): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname === "/sessions" && request.method === "GET") {
    const sessions = [];
    for await (const s of store.sessions()) {
      sessions.push({ ...s, lastActivity: s.lastActivity.toISOString() });
      if (sessions.length >= 100) break;
    }
    return json({ sessions });
  }
  const match = route.exec(url);
  if (match === null) return json({ error: "Not found" }, 404);
  const botId = decodeURIComponent(match.pathname.groups.bot!);
  const sessionId = decodeURIComponent(match.pathname.groups.session!);
  if (request.method === "GET") {
    using session = await store.openKv(botId, sessionId);
    const messages = [];
    for await (const e of session.list<Message>({ prefix: ["messages"] })) messages.push(e.value);
    return json({ botId, sessionId, messages });
  }
  if (request.method !== "POST") return json({ error: "Method not allowed" }, 405);
  const text = (await request.text()).trim();
  if (text === "" || text.length > 10_000) {
    return json({ error: "Send 1 to 10000 characters of text" }, 400);
  }
  // One turn at a time per conversation, across every instance.
  return await store.withSession(botId, sessionId, async (session) => {
    const history: Message[] = [];
    for await (const e of session.list<Message>({ prefix: ["messages"] })) history.push(e.value);
    const now = new Date().toISOString();
    const answer: Message = { role: "assistant", text: reply(history, text), at: now };
    const n = history.length;
    const result = await session.atomic()
      .set(["messages", n], { role: "user", text, at: now } satisfies Message)
      .set(["messages", n + 1], answer)
      .sum(["turns"], 1n)
      .commit();
    if (!result.ok) return json({ error: "Conflict" }, 409);
    return json({ reply: answer.text, versionstamp: result.versionstamp }, 201);
  }, { timeoutMs: 10_000 }).catch((error: Error) =>
    json({ error: error.message }, error instanceof TypeError ? 400 : 503)
  );
}

Deno.serve(handle);
