/**
 * An HTTP chat agent on sessionkv: every `(bot, session)` conversation is its
 * own SQLite file, every turn an exclusive lease on it, and idle
 * conversations are swept by `scheduleCleanup`. The model is a deterministic
 * fake, so it runs offline.
 *
 * ```sh
 * deno run --allow-net --allow-read --allow-write --allow-env \
 *   examples/agent_server.ts [--root DIR] [--port 8000] [--hostname 127.0.0.1]
 *
 * curl -X POST localhost:8000/bots/support-bot/sessions/user-42/messages \
 *   -H 'content-type: application/json' -d '{"text":"Where is order 7?"}'
 * curl localhost:8000/bots/support-bot/sessions/user-42/messages
 * curl -N localhost:8000/bots/support-bot/sessions/user-42/events
 * ```
 *
 * | route                                     | what                                         |
 * | ----------------------------------------- | -------------------------------------------- |
 * | `POST /bots/:bot/sessions/:session/messages` | `{"text": "..."}`: one turn; 201 `{ turn, message, reply }` |
 * | `GET /bots/:bot/sessions/:session/messages`  | the history: 200 `{ botId, sessionId, messages }` |
 * | `GET /bots/:bot/sessions/:session/events`    | Server-Sent Events: the latest turn now and after every change (`kv.watch`) |
 *
 * Ids are URL path segments, percent-decoded: `a%2Fb` is the id `a/b` and
 * `..%2F..%2Fetc` the id `../../etc`, both kept inside the root by the
 * store's id encoding. (A bare `..` or `.` segment is resolved by URL parsing
 * before it gets here, so those two ids cannot be addressed.) Errors are
 * JSON `{ error }`: 400 bad id or body, 404 unknown route, 405 wrong method,
 * 413 body too large, 503 when the session's turn did not come in time or
 * the store is closing.
 *
 * Settings: `--root`, else `SESSIONKV_ROOT`, else `./data/sessions`; the
 * cleanup runs on `SESSIONKV_CLEANUP_INTERVAL_HOURS` (default 1) and deletes
 * conversations idle for `SESSIONKV_CLEANUP_OLDER_THAN_DAYS` (default 7).
 * Permissions: `--allow-net` (the listening address), `--allow-read` and
 * `--allow-write` (the root), `--allow-env` (those variables, or
 * `--allow-env=SESSIONKV_ROOT,SESSIONKV_CLEANUP_ENABLED,SESSIONKV_CLEANUP_INTERVAL_HOURS,SESSIONKV_CLEANUP_OLDER_THAN_DAYS`).
 * Add `--unstable-cron` to run the cleanup on `Deno.cron` rather than a timer.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  cleanupSettingsFromEnv,
  type KvEntryMaybe,
  LeaseTimeoutError,
  scheduleCleanup,
  SessionBusyError,
  SessionCorruptedError,
  type SessionKv,
  SessionStore,
  SessionStoreClosedError,
} from "../mod.ts";

/** One stored chat message: `["messages", seq]` in the session's KV. */
export interface ChatMessage {
  /** Who said it. */
  role: "user" | "assistant";
  /** What was said. */
  text: string;
  /** The turn it belongs to (1, 2, ...). */
  turn: number;
  /** When it was stored (ISO 8601). */
  at: string;
}

/** The latest turn: `["last"]` in the session's KV, streamed by `/events`. */
export interface LastTurn {
  /** Turns taken so far (0 before the first). */
  turn: number;
  /** The user's message of the latest turn. */
  message?: ChatMessage;
  /** The agent's reply to it. */
  reply?: ChatMessage;
}

/** Options of {@linkcode createHandler}. */
export interface AgentHandlerOptions {
  /**
   * Longest wait for a conversation's turn before answering 503.
   * @default {10000}
   */
  turnTimeoutMs?: number;
  /**
   * Largest request body accepted, in bytes.
   * @default {16384}
   */
  maxBodyBytes?: number;
  /**
   * Longest message text, in characters.
   * @default {4000}
   */
  maxTextLength?: number;
  /**
   * Interval of the keep-alive comments on event streams.
   * @default {15000}
   */
  keepAliveMs?: number;
}

const encoder = new TextEncoder();
const MAX_ID_BYTES = 255;
const ROUTE = /^\/bots\/([^/]+)\/sessions\/([^/]+)\/(messages|events)$/;

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: HeadersInit = {}) {
    super(message);
  }
}

function json(status: number, body: unknown, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

function decodeId(segment: string, what: string): string {
  let id: string;
  try {
    id = decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, `The ${what} is not valid percent-encoded UTF-8: "${segment}"`);
  }
  if (encoder.encode(id).length > MAX_ID_BYTES) {
    throw new HttpError(400, `The ${what} is longer than ${MAX_ID_BYTES} UTF-8 bytes`);
  }
  return id;
}

/** Reads at most `limit` bytes of the body, or throws 413. */
async function readBody(request: Request, limit: number): Promise<string> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) throw new HttpError(413, `The body is larger than ${limit} bytes`);
  if (request.body === null) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, `The body is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return new TextDecoder().decode(bytes);
}

async function readText(request: Request, options: Required<AgentHandlerOptions>) {
  const body = await readBody(request, options.maxBodyBytes);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new HttpError(400, 'The body must be JSON: {"text": "..."}');
  }
  const text = (parsed as { text?: unknown } | null)?.text;
  if (typeof text !== "string" || text.trim() === "") {
    throw new HttpError(400, 'The body must have a non-empty string "text"');
  }
  if (text.length > options.maxTextLength) {
    throw new HttpError(400, `"text" is longer than ${options.maxTextLength} characters`);
  }
  return text;
}

/**
 * The fake model: rules instead of a network call, so replies are the same
 * on every run. It looks orders up, recalls the first question, and
 * otherwise echoes.
 */
export function fakeReply(botId: string, history: readonly ChatMessage[], text: string): string {
  const order = /order (\d+)/i.exec(text);
  if (order) {
    const statuses = [
      "shipped on Monday",
      "being packed",
      "delivered yesterday",
      "held at customs",
    ];
    return `Order ${order[1]} is ${statuses[Number(order[1]) % statuses.length]}.`;
  }
  const first = history.find((m) => m.role === "user");
  if (/what did i ask/i.test(text)) {
    return first ? `You first asked: "${first.text}"` : "This is your first question.";
  }
  const turn = history.filter((m) => m.role === "user").length + 1;
  return `${botId} heard "${text}" (turn ${turn}).`;
}

async function history(kv: SessionKv): Promise<ChatMessage[]> {
  const messages: ChatMessage[] = [];
  for await (const entry of kv.list<ChatMessage>({ prefix: ["messages"] })) {
    messages.push(entry.value);
  }
  return messages;
}

/** One turn under the session's lease: read, reply, commit. */
async function takeTurn(
  store: SessionStore,
  botId: string,
  sessionId: string,
  text: string,
  options: Required<AgentHandlerOptions>,
): Promise<Response> {
  // Waits at most turnTimeoutMs for the conversation's turn (FIFO). (No
  // request.signal: Deno 2.9 aborts it after every response, and warns.)
  await using lease = await store.acquire(botId, sessionId, { timeoutMs: options.turnTimeoutMs });
  const kv = lease.kv;
  const last = await kv.get<LastTurn>(["last"]);
  const turn = (last.value?.turn ?? 0) + 1;
  const past = await history(kv);
  const at = new Date().toISOString();
  const message: ChatMessage = { role: "user", text, turn, at };
  const reply: ChatMessage = {
    role: "assistant",
    text: fakeReply(botId, past, text),
    turn,
    at,
  };
  const result = await kv.atomic()
    .check(last) // Nobody else writes during our lease; the check says so.
    .set(["messages", 2 * turn - 1], message)
    .set(["messages", 2 * turn], reply)
    .set(["last"], { turn, message, reply } satisfies LastTurn)
    .commit();
  if (!result.ok) throw new Error(`Turn ${turn} of ${botId}/${sessionId} lost its check`);
  return json(201, { turn, message, reply });
}

/** An SSE stream of `["last"]`: now, then after every change, until cancelled. */
async function events(
  store: SessionStore,
  botId: string,
  sessionId: string,
  completed: Promise<void> | undefined,
  options: Required<AgentHandlerOptions>,
): Promise<Response> {
  const kv = await store.openKv(botId, sessionId);
  let reader: ReadableStreamDefaultReader<[KvEntryMaybe<LastTurn>]>;
  try {
    reader = kv.watch<[LastTurn]>([["last"]]).getReader();
  } catch (error) {
    kv.close();
    throw error;
  }
  let keepAlive: ReturnType<typeof setInterval> | undefined;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearInterval(keepAlive);
    reader.cancel().catch(() => {});
    kv.close(); // The session counts as in use (safe from cleanup) until here.
  };
  // Deno.serve settles `completed` when the client leaves, even while the
  // stream waits for the next change.
  completed?.then(finish, finish);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode("retry: 2000\n\n"));
      keepAlive = setInterval(() => {
        try {
          controller.enqueue(encoder.encode(": keep-alive\n\n"));
        } catch {
          finish();
        }
      }, options.keepAliveMs);
    },
    async pull(controller) {
      let next: ReadableStreamReadResult<[KvEntryMaybe<LastTurn>]>;
      try {
        next = await reader.read();
      } catch {
        next = { done: true };
      }
      if (next.done || finished) {
        // The store closed: end the stream.
        finish();
        try {
          controller.close();
        } catch { /* already cancelled */ }
        return;
      }
      const [entry] = next.value;
      const data: LastTurn = entry.value ?? { turn: 0 };
      controller.enqueue(
        encoder.encode(
          `id: ${entry.versionstamp ?? "0"}\nevent: turn\ndata: ${JSON.stringify(data)}\n\n`,
        ),
      );
    },
    cancel() {
      finish();
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
    },
  });
}

/**
 * Makes the agent's request handler, for `Deno.serve`, on `store`.
 *
 * @param store Where the conversations live; the caller closes it (which
 *   also ends open event streams).
 * @param options Timeouts and size limits.
 * @returns The handler.
 *
 * @example On a free port
 * ```ts ignore
 * const store = new SessionStore({ root: "./data/agent" });
 * const server = Deno.serve({ port: 0 }, createHandler(store));
 * ```
 */
export function createHandler(
  store: SessionStore,
  options: AgentHandlerOptions = {},
): (request: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  const settings: Required<AgentHandlerOptions> = {
    turnTimeoutMs: options.turnTimeoutMs ?? 10_000,
    maxBodyBytes: options.maxBodyBytes ?? 16_384,
    maxTextLength: options.maxTextLength ?? 4000,
    keepAliveMs: options.keepAliveMs ?? 15_000,
  };
  return async (request, info) => {
    try {
      const match = ROUTE.exec(new URL(request.url).pathname);
      if (match === null) throw new HttpError(404, "Not found");
      const botId = decodeId(match[1]!, "bot id");
      const sessionId = decodeId(match[2]!, "session id");
      const resource = match[3]!;
      if (resource === "messages" && request.method === "POST") {
        const text = await readText(request, settings);
        return await takeTurn(store, botId, sessionId, text, settings);
      }
      if (resource === "messages" && request.method === "GET") {
        // An unknown session reads as empty (opening creates it; cleanup
        // removes it once idle).
        using kv = await store.openKv(botId, sessionId);
        return json(200, { botId, sessionId, messages: await history(kv) });
      }
      if (resource === "events" && request.method === "GET") {
        return await events(store, botId, sessionId, info?.completed, settings);
      }
      throw new HttpError(405, `${request.method} is not allowed here`, {
        allow: resource === "messages" ? "GET, POST" : "GET",
      });
    } catch (error) {
      if (error instanceof HttpError) {
        return json(error.status, { error: error.message }, error.headers);
      }
      if (
        error instanceof LeaseTimeoutError || error instanceof SessionBusyError ||
        error instanceof SessionStoreClosedError
      ) {
        return json(503, { error: error.message }, { "retry-after": "1" });
      }
      if (error instanceof SessionCorruptedError) {
        return json(500, { error: "This conversation's storage is damaged" });
      }
      console.error(error);
      return json(500, { error: "Internal error" });
    }
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      root: { type: "string" },
      port: { type: "string", default: "8000" },
      hostname: { type: "string", default: "127.0.0.1" },
    },
  });
  const root = values.root ?? Deno.env.get("SESSIONKV_ROOT") ?? "./data/sessions";
  const store = new SessionStore({ root });
  // Registered at module top level, while the module loads: `Deno.cron`
  // (with --unstable-cron, and on Deno Deploy) takes jobs only then. Without
  // it, a timer in this process runs the sweep. `store.close()` stops it.
  const env = cleanupSettingsFromEnv();
  const cleanup = scheduleCleanup(store, {
    schedule: env.schedule,
    olderThanDays: env.olderThanDays,
    onReport: (report) =>
      console.log(`cleanup: deleted ${report.deleted} of ${report.scanned} sessions`),
  });

  const shutdown = new AbortController();
  const server = Deno.serve({
    hostname: values.hostname,
    port: Number(values.port),
    signal: shutdown.signal,
    onListen: ({ hostname, port }) => {
      console.log(`agent listening on http://${hostname}:${port}/ (data: ${root})`);
      console.log(`cleanup: ${cleanup.mode}, "${cleanup.schedule}", after ${env.olderThanDays} d`);
    },
  }, createHandler(store));
  const stop = () => {
    shutdown.abort(); // Stop accepting; then end event streams and turns.
    void store.close();
  };
  const signals = Deno.build.os === "windows"
    ? ["SIGINT"] as const
    : ["SIGINT", "SIGTERM"] as const;
  for (const signal of signals) Deno.addSignalListener(signal, stop);
  await server.finished;
  await store.close();
  for (const signal of signals) Deno.removeSignalListener(signal, stop);
  console.log("agent stopped");
}
